"""The pod template override is an allowlist: what would give a pod host access, another
identity or GPUs is refused by the model and declared as refused (by CEL) in the CRD."""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest

from joulescale.api import crd, parse_spec
from joulescale.api.podtemplate import REFUSED_POD_FIELDS
from joulescale.api.volumes import REFUSED_SOURCES
from joulescale.profiles import list_profiles, load_profile

BASE: dict[str, Any] = {
    "model": {"name": "m"},
    "engine": {"image": "vllm/vllm-openai:v0.11.0"},
    "prefill": {"replicas": 1, "gpu": {"products": ["A"]}},
    "decode": {"replicas": 1, "gpu": {"products": ["A"]}},
    "slo": {"ttftMs": 600, "tpotMs": 50},
}


def spec_with(override: Any = None, **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    if override is not None:
        spec["decode"]["podTemplate"] = override
    spec.update(changes)
    return spec


def refusal(override: Any) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        parse_spec(spec_with(override))
    return str(caught.value)


@pytest.mark.parametrize("field", sorted(REFUSED_POD_FIELDS))
def test_every_pod_field_outside_the_allowlist_is_refused_by_name(field: str) -> None:
    assert field in refusal({"spec": {field: True}})


@pytest.mark.parametrize("source", REFUSED_SOURCES)
def test_every_unsafe_volume_type_is_refused_by_name(source: str) -> None:
    assert source in refusal({"spec": {"volumes": [{"name": "v", source: {"path": "/"}}]}})


@pytest.mark.parametrize(
    ("container", "named"),
    [
        ({"name": "engine", "command": ["sh"]}, "command"),
        ({"name": "engine", "args": ["--x"]}, "args"),
        ({"name": "engine", "image": "evil"}, "image"),
        ({"name": "s", "image": "i", "securityContext": {"privileged": True}}, "privileged"),
        (
            {"name": "s", "image": "i", "securityContext": {"allowPrivilegeEscalation": True}},
            "allowPrivilegeEscalation",
        ),
        ({"name": "s", "image": "i", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}, "add"),
        ({"name": "s", "image": "i", "securityContext": {"procMount": "Unmasked"}}, "procMount"),
        ({"name": "s", "image": "i", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}, "type"),
        ({"name": "s", "image": "i", "ports": [{"containerPort": 1, "hostPort": 1}]}, "hostPort"),
        ({"name": "s", "image": "i", "resources": {"limits": {"nvidia.com/gpu": 1}}}, "nvidia.com/gpu"),
        (
            {"name": "s", "image": "i", "resources": {"requests": {"gpu.intel.com/i915": 1}}},
            "gpu.intel.com/i915",
        ),
        (
            {"name": "s", "image": "i", "resources": {"limits": {"example.com/GPU-slice": 1}}},
            "example.com/GPU-slice",
        ),
        ({"name": "s"}, "needs an image"),
        ({"name": 5}, "name"),
        (
            {
                "name": "s",
                "image": "i",
                "volumeMounts": [{"name": "v", "mountPath": "/", "mountPropagation": "x"}],
            },
            "mountPropagation",
        ),
    ],
)
def test_containers_get_no_privilege_no_gpu_and_leave_the_engine_command_alone(
    container: dict[str, Any], named: str
) -> None:
    assert named in refusal({"spec": {"containers": [container]}})


@pytest.mark.parametrize(
    "override",
    [
        {"metadata": 5},
        {"spec": {"containers": "x"}},
        {"spec": []},
        "x",
        {"metadata": {"labels": {"joulescale.io/role": "prefill"}}},
        {"metadata": {"annotations": {"node.joulescale.io/gpus": "0"}}},
        {"metadata": {"namespace": "kube-system"}},
        {"spec": {"volumes": [{"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}]}},
        {"spec": {"unknownField": 1}},
        {"spec": {"priorityClassName": "system-cluster-critical"}},
        {
            "metadata": {
                "annotations": {"container.apparmor.security.beta.kubernetes.io/engine": "unconfined"}
            }
        },
        {
            "spec": {
                "containers": [
                    {"name": "engine", "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}
                ]
            }
        },
        {"spec": {"containers": [{"name": "engine", "resources": {"claims": [{"name": "gpus"}]}}]}},
        {"spec": {"containers": [{"name": "engine", "resources": {"limits": {"NVIDIA.COM/GPU": 8}}}]}},
    ],
)
def test_malformed_and_reserved_overrides_are_refused(override: Any) -> None:
    refusal(override)


def test_an_allowed_override_keeps_its_fields() -> None:
    override = {
        "metadata": {"labels": {"team": "a"}, "annotations": {"example.com/x": "y"}},
        "spec": {
            "containers": [
                {
                    "name": "engine",
                    "env": [{"name": "A", "value": "b"}],
                    "resources": {"limits": {"memory": "1Gi"}},
                },
                {
                    "name": "shipper",
                    "image": "busybox",
                    "securityContext": {"capabilities": {"drop": ["ALL"]}},
                },
            ],
            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
            "priorityClassName": "high",
            "imagePullSecrets": [{"name": "registry"}],
        },
    }
    template = parse_spec(spec_with(override)).decode.pod_template
    assert template is not None
    assert template.to_wire() == override


def crd_node(*path: str) -> dict[str, Any]:
    node: dict[str, Any] = crd.openapi_schema()["properties"]["spec"]
    for key in path:
        node = node["items"] if key == "[]" else node["properties"][key]
    return node


def test_the_crd_declares_each_refused_field_with_a_rule_naming_it() -> None:
    pod = crd_node("decode", "podTemplate", "spec")
    assert "x-kubernetes-preserve-unknown-fields" not in pod
    rules = {rule.get("fieldPath"): rule for rule in pod["x-kubernetes-validations"]}
    for field in REFUSED_POD_FIELDS:
        assert field in pod["properties"]
        assert rules[f".{field}"]["rule"] == f"!has(self.{field})"
        assert field in rules[f".{field}"]["message"]
    volume_rules = {
        r.get("fieldPath")
        for r in crd_node("decode", "podTemplate", "spec", "volumes", "[]")["x-kubernetes-validations"]
    }
    assert {f".{source}" for source in REFUSED_SOURCES} <= volume_rules


def test_clock_bounds_are_those_of_the_shipped_gpus() -> None:
    profiles = [load_profile(name) for name in list_profiles()]
    floor, ceiling = min(p.min_sm_clock_mhz for p in profiles), max(p.max_sm_clock_mhz for p in profiles)
    for field in ("minMHz", "maxMHz"):
        node = crd_node("energy", "clocks", field)
        assert (node["minimum"], node["maximum"]) == (floor, ceiling)
    parse_spec(spec_with(energy={"clocks": {"minMHz": floor, "maxMHz": ceiling}}))
    for clocks in ({"minMHz": 3000, "maxMHz": 5000}, {"maxMHz": ceiling + 1}, {"minMHz": floor - 1}):
        with pytest.raises(pydantic.ValidationError):
            parse_spec(spec_with(energy={"clocks": clocks}))


def test_the_engine_env_may_not_steer_the_nvidia_container_runtime() -> None:
    spec = spec_with(engine={"image": "i", "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]})
    with pytest.raises(pydantic.ValidationError, match="NVIDIA_VISIBLE_DEVICES"):
        parse_spec(spec)
