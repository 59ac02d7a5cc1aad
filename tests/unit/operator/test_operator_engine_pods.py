"""Engine pods as vLLM and SGLang need them: /dev/shm, the model cache, the token, the rollout,
the token budget, and the router's scheduling fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from joulescale.api import parse_spec
from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.context import PolicyContext
from joulescale.twin.cluster import ClusterConfig
from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.render import render_children
from joulescale_operator.validation import InvalidSpec, validated_spec

IDENTITY = ServiceIdentity(namespace="ns", name="llama", uid="uid-1", generation=1)
ROUTER = {"enabled": True, "image": "ghcr.io/example/router:1"}


def rendered(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    children = render_children(IDENTITY, validated_spec(IDENTITY, body["spec"]))
    return {child["metadata"]["name"]: child for child in children if child["kind"] == "Deployment"}


def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def engine(deployment: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod(deployment)["containers"] if c["name"] == "engine")


def volumes(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod(deployment).get("volumes", [])}


def mounts(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in engine(deployment).get("volumeMounts", [])}


def env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = engine(deployment)["env"]
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), names
    return {e["name"]: e for e in entries}


@pytest.mark.parametrize("engine_name", ["vllm", "sglang"])
def test_dev_shm_is_memory_backed_and_sized_per_gpu_for_each_role(
    body_factory: Callable[..., Any], engine_name: str
) -> None:
    image = {"vllm": "vllm/vllm-openai:v0.11.0", "sglang": "lmsysorg/sglang:v0.5.2-cu126"}[engine_name]
    children = rendered(body_factory(engine={"name": engine_name, "image": image}))
    for name, tp in (("llama-prefill", 2), ("llama-decode", 4)):
        deployment = children[name]
        shm = volumes(deployment)[mounts(deployment)["/dev/shm"]["name"]]
        assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{8 * tp}Gi"}


def test_the_shm_size_per_gpu_comes_from_the_spec(body_factory: Callable[..., Any]) -> None:
    body = body_factory(engine={"image": "vllm/vllm-openai:v0.11.0", "shmGiBPerGpu": 3})
    decode = rendered(body)["llama-decode"]
    assert volumes(decode)["shm"]["emptyDir"]["sizeLimit"] == "12Gi"


def test_an_override_shm_volume_of_the_same_name_replaces_the_rendered_one(
    body_factory: Callable[..., Any],
) -> None:
    """What the SGLang sample once added by hand still renders one valid /dev/shm."""
    override = {
        "spec": {
            "containers": [{"name": "engine", "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}]}],
            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "5Gi"}}],
        }
    }
    prefill = {**body_factory()["spec"]["prefill"], "podTemplate": override}
    deployment = rendered(body_factory(prefill=prefill))["llama-prefill"]
    assert [m["mountPath"] for m in engine(deployment)["volumeMounts"]].count("/dev/shm") == 1
    assert volumes(deployment)["shm"] == {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "5Gi"}}


def test_without_a_cache_hf_home_is_an_emptydir_and_no_token_is_set(body_factory: Callable[..., Any]) -> None:
    decode = rendered(body_factory())["llama-decode"]
    assert env(decode)["HF_HOME"]["value"] == "/model-cache"
    assert volumes(decode)[mounts(decode)["/model-cache"]["name"]]["emptyDir"] == {}
    assert "HF_TOKEN" not in env(decode)
    assert "HF_HUB_OFFLINE" not in env(decode)


def test_a_cache_claim_is_mounted_at_hf_home_in_both_roles(body_factory: Callable[..., Any]) -> None:
    model = {"name": "meta-llama/Llama-3.1-8B-Instruct", "cache": {"claimName": "weights"}}
    for deployment in rendered(body_factory(model=model)).values():
        cache = volumes(deployment)[mounts(deployment)[env(deployment)["HF_HOME"]["value"]]["name"]]
        assert cache["persistentVolumeClaim"] == {"claimName": "weights"}
        assert "emptyDir" not in cache
        assert not mounts(deployment)["/model-cache"].get("readOnly")


def test_a_read_only_cache_is_mounted_read_only_and_the_engines_go_offline(
    body_factory: Callable[..., Any],
) -> None:
    model = {"name": "m", "cache": {"claimName": "weights", "readOnly": True}}
    decode = rendered(body_factory(model=model))["llama-decode"]
    assert volumes(decode)["model-cache"]["persistentVolumeClaim"] == {
        "claimName": "weights",
        "readOnly": True,
    }
    assert mounts(decode)["/model-cache"]["readOnly"] is True
    assert env(decode)["HF_HUB_OFFLINE"]["value"] == "1"


def test_a_host_path_cache_is_refused_by_the_model(body_factory: Callable[..., Any]) -> None:
    model = {"name": "m", "cache": {"hostPath": {"path": "/var/lib/models"}}}
    with pytest.raises(InvalidSpec, match="cache"):
        rendered(body_factory(model=model))


@pytest.mark.parametrize("engine_name", ["vllm", "sglang"])
def test_the_secret_ref_becomes_hf_token(body_factory: Callable[..., Any], engine_name: str) -> None:
    model = {"name": "m", "secretRef": {"name": "hf"}}
    body = body_factory(model=model, engine={"name": engine_name, "image": "img:1"})
    for deployment in rendered(body).values():
        assert env(deployment)["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}
    model["secretRef"] = {"name": "hf", "key": "token"}
    decode = rendered(body_factory(model=model))["llama-decode"]
    assert env(decode)["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}


def test_a_user_variable_replaces_the_operators_of_the_same_name(body_factory: Callable[..., Any]) -> None:
    body = body_factory(
        model={"name": "m", "secretRef": {"name": "hf"}},
        engine={"image": "img:1", "env": [{"name": "HF_HOME", "value": "/data"}]},
    )
    decode = rendered(body)["llama-decode"]
    assert env(decode)["HF_HOME"] == {"name": "HF_HOME", "value": "/data"}
    assert "HF_TOKEN" in env(decode)


def test_engine_rollouts_free_gpus_first_by_default(body_factory: Callable[..., Any]) -> None:
    for deployment in rendered(body_factory()).values():
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
        }


def test_the_rollout_comes_from_the_role(body_factory: Callable[..., Any]) -> None:
    decode = {**body_factory()["spec"]["decode"], "rollout": {"maxSurge": 1, "maxUnavailable": 0}}
    children = rendered(body_factory(decode=decode))
    assert children["llama-decode"]["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 1,
        "maxUnavailable": 0,
    }
    assert children["llama-prefill"]["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 0,
        "maxUnavailable": 1,
    }


@pytest.mark.parametrize(
    "rollout", [{"maxSurge": 0, "maxUnavailable": 0}, {"maxSurge": -1}, {"maxUnavailable": "25%"}]
)
def test_a_rollout_that_cannot_progress_is_refused(body_factory: Callable[..., Any], rollout: Any) -> None:
    decode = {**body_factory()["spec"]["decode"], "rollout": rollout}
    with pytest.raises(pydantic.ValidationError):
        parse_spec(body_factory(decode=decode)["spec"])


def _flag(command: list[str], flag: str) -> str:
    assert command.count(flag) == 1, (flag, command)
    return command[command.index(flag) + 1]


def test_the_token_budget_defaults_to_the_one_the_policies_and_twin_plan_with(
    body_factory: Callable[..., Any],
) -> None:
    assert PolicyContext.__dataclass_fields__["token_budget"].default == DEFAULT_TOKEN_BUDGET
    assert ClusterConfig.__dataclass_fields__["prefill_token_budget"].default == DEFAULT_TOKEN_BUDGET
    vllm = rendered(body_factory())
    sglang = rendered(body_factory(engine={"name": "sglang", "image": "img:1"}))
    for deployment in vllm.values():
        assert _flag(engine(deployment)["command"], "--max-num-batched-tokens") == str(DEFAULT_TOKEN_BUDGET)
    for deployment in sglang.values():
        command = engine(deployment)["command"]
        assert _flag(command, "--chunked-prefill-size") == str(DEFAULT_TOKEN_BUDGET)
        assert _flag(command, "--max-prefill-tokens") == str(DEFAULT_TOKEN_BUDGET)


@pytest.mark.parametrize(
    ("engine_name", "flags"),
    [("vllm", ["--max-num-batched-tokens"]), ("sglang", ["--chunked-prefill-size", "--max-prefill-tokens"])],
)
def test_one_spec_value_sets_the_engines_token_budget(
    body_factory: Callable[..., Any], engine_name: str, flags: list[str]
) -> None:
    body = body_factory(engine={"name": engine_name, "image": "img:1", "maxBatchedTokens": 4096})
    for deployment in rendered(body).values():
        for flag in flags:
            assert _flag(engine(deployment)["command"], flag) == "4096"


@pytest.mark.parametrize(
    ("engine_name", "arg"),
    [
        ("vllm", "--max-num-batched-tokens=2048"),
        ("sglang", "--chunked-prefill-size"),
        ("sglang", "--max-prefill-tokens=1"),
    ],
)
def test_the_budget_flags_are_the_operators(
    body_factory: Callable[..., Any], engine_name: str, arg: str
) -> None:
    body = body_factory(engine={"name": engine_name, "image": "img:1", "args": [arg, "2048"]})
    with pytest.raises(InvalidSpec, match="set by the operator"):
        rendered(body)


def test_the_router_gets_its_tolerations_node_selector_and_resources(
    body_factory: Callable[..., Any],
) -> None:
    router = {
        **ROUTER,
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"pool": "cpu"},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    }
    deployment = rendered(body_factory(router=router))["llama-router"]
    assert pod(deployment)["tolerations"] == router["tolerations"]
    assert pod(deployment)["nodeSelector"] == {"pool": "cpu"}
    (container,) = pod(deployment)["containers"]
    assert container["resources"] == router["resources"]


def test_a_router_with_no_scheduling_fields_renders_none(body_factory: Callable[..., Any]) -> None:
    deployment = rendered(body_factory(router=ROUTER))["llama-router"]
    assert {"tolerations", "nodeSelector"}.isdisjoint(pod(deployment))
    assert "resources" not in pod(deployment)["containers"][0]


def test_the_router_gets_no_gpu(body_factory: Callable[..., Any]) -> None:
    router = {**ROUTER, "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    with pytest.raises(InvalidSpec, match="GPU resources"):
        rendered(body_factory(router=router))
