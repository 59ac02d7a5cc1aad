"""The apiserver takes the engine pod fields (token, cache, shm, rollout, budget, router
scheduling), defaults them as documented, refuses bad values naming the field, and accepts the
Deployments the operator renders from them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from joulescale.api import parse_spec
from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.render import render_children
from joulescale_operator.testing import apply, get, service_manifest

pytestmark = pytest.mark.integration

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "rollout-stuck",
        {
            "decode": {
                "replicas": 1,
                "gpu": {"products": ["A"]},
                "rollout": {"maxSurge": 0, "maxUnavailable": 0},
            }
        },
        "spec.decode.rollout.maxUnavailable",
    ),
    (
        "rollout-percent",
        {"prefill": {"replicas": 1, "gpu": {"products": ["A"]}, "rollout": {"maxSurge": "25%"}}},
        "spec.prefill.rollout.maxSurge",
    ),
    ("shm-zero", {"engine": {"image": "i", "shmGiBPerGpu": 0}}, "spec.engine.shmGiBPerGpu"),
    ("budget-zero", {"engine": {"image": "i", "maxBatchedTokens": 0}}, "spec.engine.maxBatchedTokens"),
    ("secret-nameless", {"model": {"name": "m", "secretRef": {"key": "t"}}}, "spec.model.secretRef.name"),
    ("cache-hostpath", {"model": {"name": "m", "cache": {"hostPath": {"path": "/x"}}}}, "hostPath"),
    (
        "router-gpu",
        {"router": {"enabled": True, "image": "r", "resources": {"limits": {"nvidia.com/gpu": "1"}}}},
        "spec.router.resources.limits",
    ),
    (
        "router-toleration",
        {"router": {"enabled": True, "image": "r", "tolerations": [{"operator": "Maybe"}]}},
        "spec.router.tolerations[0].operator",
    ),
]


@pytest.mark.parametrize(("name", "changes", "field"), INVALID, ids=[case[0] for case in INVALID])
def test_bad_engine_pod_fields_are_refused_with_the_field_named(
    crd_plane: ControlPlane, name: str, changes: dict[str, Any], field: str
) -> None:
    result = apply(crd_plane, service_manifest(name, "default", **changes), check=False)
    assert result.returncode != 0, f"{name} was accepted"
    assert field in result.stderr, result.stderr


def test_the_apiserver_defaults_the_budget_shm_rollout_and_token_key(crd_plane: ControlPlane) -> None:
    namespace = crd_plane.create_namespace("pod-defaults")
    model = {"name": "m", "secretRef": {"name": "hf"}}
    apply(crd_plane, service_manifest("defaults", namespace, model=model))
    stored = get(crd_plane, "eals", "defaults", namespace)
    assert stored is not None
    spec = stored["spec"]
    assert spec["engine"]["maxBatchedTokens"] == DEFAULT_TOKEN_BUDGET
    assert spec["engine"]["shmGiBPerGpu"] == 8
    assert spec["model"]["secretRef"] == {"name": "hf", "key": "HF_TOKEN"}
    for role in ("prefill", "decode"):
        assert spec[role]["rollout"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_the_rendered_children_pass_the_apiservers_validation(crd_plane: ControlPlane) -> None:
    """Everything the new fields render (volumes, mounts, env from a Secret, strategy, the
    router's tolerations, nodeSelector and resources) is a valid Deployment."""
    namespace = crd_plane.create_namespace("pod-dryrun")
    changes = {
        "model": {"name": "m", "secretRef": {"name": "hf", "key": "token"}, "cache": {"claimName": "w"}},
        "engine": {"name": "sglang", "image": "lmsysorg/sglang:v0.5.2-cu126", "maxBatchedTokens": 4096},
        "router": {
            "enabled": True,
            "image": "lmsysorg/sglang:v0.5.2-cu126",
            "tolerations": [GPU_TOLERATION],
            "nodeSelector": {"pool": "any"},
            "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}},
        },
    }
    manifest = service_manifest("dryrun", namespace, **changes)
    apply(crd_plane, manifest)
    stored = get(crd_plane, "eals", "dryrun", namespace)
    assert stored is not None
    identity = ServiceIdentity(
        namespace=namespace, name="dryrun", uid=stored["metadata"]["uid"], generation=1
    )
    children = render_children(identity, parse_spec(stored["spec"]))
    documents = yaml.safe_dump_all(children)
    result = crd_plane.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=test",
        "-o",
        "json",
        "-f",
        "-",
        input=documents,
    )
    accepted = json.loads(result.stdout)
    items = accepted["items"] if accepted.get("kind") == "List" else [accepted]
    deployments = {item["metadata"]["name"]: item for item in items if item["kind"] == "Deployment"}
    assert set(deployments) == {"dryrun-prefill", "dryrun-decode", "dryrun-router"}
    router = deployments["dryrun-router"]["spec"]["template"]["spec"]
    assert router["tolerations"] == [GPU_TOLERATION]
    assert router["containers"][0]["resources"] == {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}
    decode = deployments["dryrun-decode"]["spec"]
    assert decode["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    volumes = {v["name"]: v for v in decode["template"]["spec"]["volumes"]}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "w"}


def test_the_engine_hook_renders_valid_deployments_and_reserves_its_variables(crd_plane: ControlPlane) -> None:
    """The hook's init container, hostPath volume, subPathExpr mount and downward-API variable are
    a valid Deployment; the CRD refuses a JOULESCALE_ variable in spec.engine.env."""
    namespace = crd_plane.create_namespace("pod-hook")
    refused = apply(crd_plane, service_manifest(
        "hookenv", namespace,
        engine={"image": "vllm/vllm-openai:v0.33.0", "env": [{"name": "JOULESCALE_POD_UID", "value": "x"}]},
    ), check=False)
    assert refused.returncode != 0
    assert "JOULESCALE_" in refused.stderr, refused.stderr
    apply(crd_plane, service_manifest("hook", namespace, engine={"image": "vllm/vllm-openai:v0.33.0"}))
    stored = get(crd_plane, "eals", "hook", namespace)
    assert stored is not None
    assert stored["spec"]["engine"]["hook"] == {"mode": "auto", "inject": True}
    identity = ServiceIdentity(namespace=namespace, name="hook", uid=stored["metadata"]["uid"], generation=1)
    children = [c for c in render_children(identity, parse_spec(stored["spec"])) if c["kind"] == "Deployment"]
    result = crd_plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=test", "-o", "json", "-f", "-",
        input=yaml.safe_dump_all(children),
    )
    accepted = json.loads(result.stdout)
    items = accepted["items"] if accepted.get("kind") == "List" else [accepted]
    decode = next(i for i in items if i["metadata"]["name"] == "hook-decode")["spec"]["template"]["spec"]
    assert decode["initContainers"][0]["name"] == "joulescale-hook"
    volumes = {v["name"]: v for v in decode["volumes"]}
    assert volumes["joulescale-hook"]["hostPath"] == {"path": "/run/joulescale/hook", "type": "DirectoryOrCreate"}
    mounts = {m["name"]: m for m in decode["containers"][0]["volumeMounts"]}
    assert mounts["joulescale-hook"]["subPathExpr"] == "$(JOULESCALE_POD_UID)"
