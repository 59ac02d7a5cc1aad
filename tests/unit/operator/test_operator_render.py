"""The renderers turn a spec into the children docs/architecture.md describes, without a cluster."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import metadata
from typing import Any

import pytest

from joulescale.api import PlanStatus, parse_spec
from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.render import desired_replicas, render_children

IDENTITY = ServiceIdentity(namespace="ns", name="llama", uid="uid-1", generation=1)


def children_of(
    body: dict[str, Any], plan: PlanStatus | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    rendered = render_children(IDENTITY, parse_spec(body["spec"]), plan)
    return {(child["kind"], child["metadata"]["name"]): child for child in rendered}


def engine_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "engine")


def test_a_service_renders_a_deployment_and_a_service_per_role(body_factory: Callable[..., Any]) -> None:
    assert sorted(children_of(body_factory())) == [
        ("Deployment", "llama-decode"),
        ("Deployment", "llama-prefill"),
        ("Service", "llama-decode"),
        ("Service", "llama-prefill"),
    ]


def test_every_child_carries_the_labels_and_a_controller_owner_reference(
    body_factory: Callable[..., Any],
) -> None:
    for (_, name), child in children_of(body_factory()).items():
        role = name.rsplit("-", 1)[1]
        labels = child["metadata"]["labels"]
        assert labels["joulescale.io/service"] == "llama"
        assert labels["joulescale.io/role"] == role
        assert labels["llm-d.ai/role"] == role
        assert labels["app.kubernetes.io/component"] == role
        assert labels["app.kubernetes.io/instance"] == "llama"
        assert labels["app.kubernetes.io/managed-by"] == "joulescale-operator"
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["uid"] == "uid-1"
        assert owner["controller"] is True
        assert owner["kind"] == "EnergyAwareLLMService"


def test_gpu_pods_request_tp_gpus_tolerate_the_taint_and_require_the_products(
    body_factory: Callable[..., Any],
) -> None:
    decode = children_of(body_factory())[("Deployment", "llama-decode")]
    pod = decode["spec"]["template"]["spec"]
    resources = engine_container(decode)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "4"
    assert resources["requests"]["nvidia.com/gpu"] == "4"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB"]}
            ]
        }
    ]


def test_user_placement_is_added_to_the_gpu_placement(body_factory: Callable[..., Any]) -> None:
    body = body_factory()
    body["spec"]["prefill"].update(
        nodeSelector={"zone": "a"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
        resources={"limits": {"memory": "64Gi"}, "requests": {"cpu": 8}},
    )
    prefill = children_of(body)[("Deployment", "llama-prefill")]
    pod = prefill["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"zone": "a"}
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "dedicated"]
    resources = engine_container(prefill)["resources"]
    assert resources["limits"] == {"memory": "64Gi", "nvidia.com/gpu": "2"}
    assert resources["requests"] == {"cpu": "8", "nvidia.com/gpu": "2"}


def test_vllm_roles_serve_with_tensor_parallelism_and_the_nixl_connector(
    body_factory: Callable[..., Any],
) -> None:
    body = body_factory(engine={"image": "vllm/vllm-openai:v0.11.0", "args": ["--max-model-len", "8192"]})
    container = engine_container(children_of(body)[("Deployment", "llama-prefill")])
    command = container["command"]
    assert command[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert command[command.index("--tensor-parallel-size") + 1] == "2"
    kv = json.loads(command[command.index("--kv-transfer-config") + 1])
    assert kv == {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
    assert command[-2:] == ["--max-model-len", "8192"]
    env = {e["name"]: e for e in container["env"]}
    assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["VLLM_NIXL_SIDE_CHANNEL_PORT"]["value"] == "5600"


@pytest.mark.parametrize(
    ("connector", "prefill_role", "decode_role"),
    [("P2pNcclConnector", "kv_producer", "kv_consumer"), ("MooncakeConnector", "kv_producer", "kv_consumer")],
)
def test_vllm_producer_consumer_connectors_get_roles_per_side(
    body_factory: Callable[..., Any], connector: str, prefill_role: str, decode_role: str
) -> None:
    children = children_of(body_factory(kvTransfer={"connector": connector}))
    for name, role in (("llama-prefill", prefill_role), ("llama-decode", decode_role)):
        command = engine_container(children[("Deployment", name)])["command"]
        kv = json.loads(command[command.index("--kv-transfer-config") + 1])
        assert (kv["kv_connector"], kv["kv_role"]) == (connector, role)


def test_sglang_roles_launch_in_disaggregation_mode_with_the_backend(
    body_factory: Callable[..., Any],
) -> None:
    body = body_factory(
        engine={"name": "sglang", "image": "lmsysorg/sglang:v0.5"}, kvTransfer={"backend": "nixl"}
    )
    children = children_of(body)
    for role, tp in (("prefill", "2"), ("decode", "4")):
        deployment = children[("Deployment", f"llama-{role}")]
        command = engine_container(deployment)["command"]
        assert command[:3] == ["python3", "-m", "sglang.launch_server"]
        assert command[command.index("--tp") + 1] == tp
        assert command[command.index("--disaggregation-mode") + 1] == role
        assert command[command.index("--disaggregation-transfer-backend") + 1] == "nixl"
    prefill = children[("Deployment", "llama-prefill")]
    assert prefill["spec"]["template"]["metadata"]["annotations"] == {"sglang.ai/bootstrap-port": "8998"}


def test_the_sglang_router_discovers_pods_by_label_with_its_own_service_account(
    body_factory: Callable[..., Any],
) -> None:
    body = body_factory(
        engine={"name": "sglang", "image": "lmsysorg/sglang:v0.5"},
        router={"enabled": True, "image": "router:1"},
    )
    children = children_of(body)
    router = children[("Deployment", "llama-router")]
    pod = router["spec"]["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert "--pd-disaggregation" in command
    assert (
        command[command.index("--prefill-selector") + 1]
        == "joulescale.io/service=llama,joulescale.io/role=prefill"
    )
    assert pod["serviceAccountName"] == "llama-router"
    assert {
        ("ServiceAccount", "llama-router"),
        ("Role", "llama-router"),
        ("RoleBinding", "llama-router"),
    } <= set(children)
    assert ("Service", "llama-router") in children
    assert "affinity" not in pod


def test_a_vllm_router_is_pointed_at_the_role_services(body_factory: Callable[..., Any]) -> None:
    children = children_of(body_factory(router={"enabled": True, "image": "proxy:1", "port": 9000}))
    args = children[("Deployment", "llama-router")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--prefiller-hosts") + 1] == "llama-prefill.ns.svc"
    assert args[args.index("--decoder-hosts") + 1] == "llama-decode.ns.svc"
    assert children[("Service", "llama-router")]["spec"]["ports"][0]["port"] == 9000
    assert ("ServiceAccount", "llama-router") not in children


@pytest.mark.parametrize(
    ("engine", "router", "image"),
    [
        ({}, {}, f"ghcr.io/joulescale/joulescale-router:{metadata.version('joulescale')}"),
        ({"name": "sglang", "image": "lmsysorg/sglang:v0.5"}, {}, "lmsysorg/sglang:v0.5"),
        ({}, {"image": "mine:2"}, "mine:2"),
        ({"name": "sglang", "image": "lmsysorg/sglang:v0.5"}, {"image": "mine:2"}, "mine:2"),
    ],
)
def test_a_router_without_an_image_gets_the_one_for_its_engine(
    body_factory: Callable[..., Any], engine: dict[str, str], router: dict[str, str], image: str
) -> None:
    """vLLM: the shipped P/D proxy (router/) of the operator's version; SGLang: the engine image."""
    body = body_factory(router={"enabled": True, **router}, **({"engine": engine} if engine else {}))
    router_pod = children_of(body)[("Deployment", "llama-router")]["spec"]["template"]["spec"]
    assert router_pod["containers"][0]["image"] == image


@pytest.mark.parametrize(("planned", "expected"), [(None, 2), (5, 5), (1, 2), (99, 6)])
def test_autoscaled_replicas_follow_the_plan_within_bounds(
    body_factory: Callable[..., Any], planned: int | None, expected: int
) -> None:
    body = body_factory()
    body["spec"]["decode"] = {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}, "gpu": {"products": ["A"]}}
    plan = PlanStatus(decode_replicas=planned)
    assert desired_replicas(parse_spec(body["spec"]), "decode", plan) == expected


def test_the_pod_template_override_merges_containers_by_name(body_factory: Callable[..., Any]) -> None:
    body = body_factory()
    body["spec"]["decode"]["podTemplate"] = {
        "metadata": {"annotations": {"team": "a"}},
        "spec": {
            "containers": [{"name": "engine", "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }
    decode = children_of(body)[("Deployment", "llama-decode")]
    template = decode["spec"]["template"]
    container = engine_container(decode)
    assert container["volumeMounts"][-1] == {"name": "scratch", "mountPath": "/scratch"}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/dev/shm", "/model-cache", "/scratch"}
    assert container["image"] == "vllm/vllm-openai:v0.11.0"
    assert template["spec"]["volumes"][-1] == {"name": "scratch", "emptyDir": {}}
    assert template["metadata"]["annotations"] == {"team": "a"}
    assert template["metadata"]["labels"]["joulescale.io/role"] == "decode"


def test_rendering_is_deterministic(body_factory: Callable[..., Any]) -> None:
    body = body_factory()
    assert render_children(IDENTITY, parse_spec(body["spec"])) == render_children(
        IDENTITY, parse_spec(body["spec"])
    )


def test_slo_and_policy_are_annotated_on_the_deployment_not_the_pods(
    body_factory: Callable[..., Any],
) -> None:
    before = children_of(body_factory())[("Deployment", "llama-decode")]
    after = children_of(body_factory(slo={"ttftMs": 300, "tpotMs": 40, "percentile": 90}))[
        ("Deployment", "llama-decode")
    ]
    assert after["metadata"]["annotations"]["joulescale.io/ttft-ms"] == "300"
    assert after["metadata"]["annotations"]["joulescale.io/slo-percentile"] == "90"
    assert after["spec"]["template"] == before["spec"]["template"]
