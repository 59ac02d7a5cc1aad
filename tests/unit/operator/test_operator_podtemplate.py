"""The operator merges only the typed override, and never renders host access even when the
model was bypassed (an object stored before the CRD refused a field, or a merge bug)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from joulescale.api import (
    Container,
    PodSpecOverride,
    PodTemplateOverride,
    SecurityContext,
    Volume,
    parse_spec,
)
from joulescale_operator.engines import engine_launch
from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.podguard import SIDECAR_GPU_ENV, host_access_problems
from joulescale_operator.pods import ForbiddenPodTemplate, engine_pod_template
from joulescale_operator.validation import InvalidSpec, validated_spec

IDENTITY = ServiceIdentity(namespace="ns", name="llama", uid="uid-1", generation=1)


def decode_template(body: dict[str, Any]) -> dict[str, Any]:
    spec = parse_spec(body["spec"])
    return engine_pod_template(
        spec, "decode", engine_launch(spec, "decode", IDENTITY), IDENTITY.labels("decode", "vllm")
    )


def test_the_override_adds_to_the_placement_and_patches_the_engine_by_name(
    body_factory: Callable[..., Any],
) -> None:
    body = body_factory()
    body["spec"]["decode"]["podTemplate"] = {
        "metadata": {"labels": {"team": "a"}},
        "spec": {
            "containers": [
                {
                    "name": "engine",
                    "env": [{"name": "A", "value": "b"}],
                    "resources": {"limits": {"memory": "1Gi"}},
                },
                {"name": "shipper", "image": "busybox"},
            ],
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                        ]
                    }
                }
            },
        },
    }
    plain = decode_template(body_factory())
    template = decode_template(body)
    engine, shipper = template["spec"]["containers"]
    (plain_engine,) = plain["spec"]["containers"]
    assert {k: engine[k] for k in ("image", "command", "ports", "readinessProbe")} == {
        k: plain_engine[k] for k in ("image", "command", "ports", "readinessProbe")
    }
    assert engine["resources"]["limits"] == {"memory": "1Gi", "nvidia.com/gpu": "4"}
    assert engine["env"][-1] == {"name": "A", "value": "b"}
    assert shipper == {"name": "shipper", "image": "busybox", "env": [SIDECAR_GPU_ENV]}
    assert template["spec"]["tolerations"] == [
        *plain["spec"]["tolerations"],
        {"key": "dedicated", "operator": "Exists"},
    ]
    (term,) = template["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert [e["key"] for e in term["matchExpressions"]] == ["zone", "nvidia.com/gpu.product"]
    assert template["metadata"]["labels"] == {**plain["metadata"]["labels"], "team": "a"}


def test_a_spec_stored_before_the_schema_refused_host_access_is_invalid(
    body_factory: Callable[..., Any],
) -> None:
    body = body_factory()
    body["spec"]["decode"]["podTemplate"] = {
        "metadata": {"annotations": {"joulescale.io/gpus": "GPU-victim"}},
        "spec": {"hostPID": True, "volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
    }
    with pytest.raises(InvalidSpec) as caught:
        validated_spec(IDENTITY, body["spec"])
    for named in ("spec.decode.podTemplate.spec", "hostPID", "joulescale.io/gpus"):
        assert named in str(caught.value)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        (
            PodSpecOverride.model_construct(
                containers=[Container.model_construct(name="engine", command=["sh"])]
            ),
            "command",
        ),
        (
            PodSpecOverride.model_construct(
                containers=[
                    Container.model_construct(
                        name="s", image="i", security_context=SecurityContext.model_construct(privileged=True)
                    )
                ]
            ),
            "securityContext",
        ),
        (PodSpecOverride.model_construct(volumes=[Volume.model_construct(name="v")]), "volumes"),
    ],
)
def test_the_rendered_template_is_checked_even_when_the_model_was_bypassed(
    body_factory: Callable[..., Any], override: PodSpecOverride, named: str
) -> None:
    spec = parse_spec(body_factory()["spec"])
    decode = spec.decode.model_copy(
        update={"pod_template": PodTemplateOverride.model_construct(spec=override)}
    )
    spec = spec.model_copy(update={"decode": decode})
    with pytest.raises(ForbiddenPodTemplate, match=named):
        engine_pod_template(
            spec, "decode", engine_launch(spec, "decode", IDENTITY), IDENTITY.labels("decode", "vllm")
        )


def test_the_guard_names_host_access_in_a_merged_template(body_factory: Callable[..., Any]) -> None:
    rendered = decode_template(body_factory())
    merged: dict[str, Any] = {
        "metadata": {**rendered["metadata"], "namespace": "kube-system"},
        "spec": {
            **rendered["spec"],
            "hostPID": True,
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [
                {**rendered["spec"]["containers"][0], "resources": {"limits": {"nvidia.com/gpu": "0"}}},
                {
                    "name": "s",
                    "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}},
                    "ports": [{"hostPort": 1}],
                },
            ],
        },
    }
    problems = " ".join(host_access_problems(rendered, merged))
    for named in ("namespace", "hostPID", "hostPath", "resources.limits", "capabilities.add", "hostPort"):
        assert named in problems
    assert host_access_problems(rendered, rendered) == []


def test_a_sidecar_never_sees_gpus_through_the_container_runtime(body_factory: Callable[..., Any]) -> None:
    """envFrom may bring NVIDIA_VISIBLE_DEVICES=all from a ConfigMap; an explicit env entry wins."""
    body = body_factory()
    sidecar = {"name": "s", "image": "i", "envFrom": [{"configMapRef": {"name": "gpus-all"}}]}
    body["spec"]["decode"]["podTemplate"] = {"spec": {"containers": [sidecar]}}
    (_, rendered) = decode_template(body)["spec"]["containers"]
    assert rendered["env"][-1] == {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}
    assert [e["name"] for e in rendered["env"]].count("NVIDIA_VISIBLE_DEVICES") == 1


@pytest.mark.parametrize("term", [{"matchExpressions": 5}, "x", {"matchFields": "y"}])
def test_a_malformed_node_term_is_left_for_the_apiserver_to_refuse(
    body_factory: Callable[..., Any], term: Any
) -> None:
    body = body_factory()
    required = {"nodeSelectorTerms": [term]}
    body["spec"]["decode"]["podTemplate"] = {
        "spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}}
    }
    affinity = decode_template(body)["spec"]["affinity"]["nodeAffinity"]
    (rendered,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert rendered == term or rendered["matchExpressions"][-1]["key"] == "nvidia.com/gpu.product"
