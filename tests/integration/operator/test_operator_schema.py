"""The apiserver itself rejects invalid services, naming the field, and explains the valid ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import apply, service_manifest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]

GPU = {"products": ["NVIDIA-H100-80GB-HBM3"]}


def with_role(role: str, **fields: Any) -> dict[str, Any]:
    return {role: {"gpu": GPU, **fields}}


INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "both-owners",
        with_role("prefill", replicas=1, autoscaling={"maxReplicas": 3}),
        "spec.prefill.replicas",
    ),
    ("no-owner", with_role("decode"), "spec.decode.replicas"),
    (
        "min-over-max",
        with_role("decode", autoscaling={"minReplicas": 5, "maxReplicas": 2}),
        "spec.decode.autoscaling.minReplicas",
    ),
    ("clocks", {"energy": {"clocks": {"minMHz": 1800, "maxMHz": 900}}}, "spec.energy.clocks.minMHz"),
    ("percentile", {"slo": {"ttftMs": 600, "tpotMs": 50, "percentile": 42}}, "spec.slo.percentile"),
    ("policy", {"energy": {"policy": "turbo"}}, "spec.energy.policy"),
    (
        "sglang-connector",
        {
            "engine": {"name": "sglang", "image": "lmsysorg/sglang"},
            "kvTransfer": {"connector": "NixlConnector"},
        },
        "spec.kvTransfer.connector",
    ),
    ("vllm-backend", {"kvTransfer": {"backend": "mooncake"}}, "spec.kvTransfer.backend"),
    ("tp-zero", with_role("prefill", replicas=1, tensorParallelSize=0), "spec.prefill.tensorParallelSize"),
    ("no-products", {"decode": {"replicas": 1, "gpu": {"products": []}}}, "spec.decode.gpu.products"),
    (
        "gpu-in-resources",
        with_role("decode", replicas=1, resources={"limits": {"nvidia.com/gpu": 8}}),
        "spec.decode.resources.limits",
    ),
    ("bad-uri", {"model": {"name": "m", "uri": "s3://bucket/m"}}, "spec.model.uri"),
]


@pytest.mark.parametrize(("name", "changes", "field"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_services_are_rejected_with_the_field_named(
    crd_plane: ControlPlane, name: str, changes: dict[str, Any], field: str
) -> None:
    namespace = "default"
    result = apply(crd_plane, service_manifest(name, namespace, **changes), check=False)
    assert result.returncode != 0, f"{name} was accepted"
    assert field in result.stderr, result.stderr


def test_explain_shows_descriptions_defaults_and_enums(crd_plane: ControlPlane) -> None:
    explained = crd_plane.kubectl("explain", "eals.spec.energy.planner").stdout
    assert "safetyMarginPercent" in explained
    assert "Default 10" in explained
    policy = crd_plane.kubectl("explain", "eals.spec.energy.policy").stdout
    assert "voltana" in policy


def test_printer_columns_show_readiness_roles_policy_endpoint_and_wide_the_model(crd_plane: ControlPlane) -> None:
    namespace = crd_plane.create_namespace("columns")
    apply(crd_plane, service_manifest("cols", namespace))
    header = crd_plane.kubectl("get", "eals", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "REASON", "PREFILL", "DECODE", "PLANNED", "J/TOKEN", "SLO%", "POLICY",
                      "ENDPOINT", "AGE"]
    wide = crd_plane.kubectl("get", "eals", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert wide == ["NAME", "READY", "REASON", "PREFILL", "DECODE", "PLANNED", "J/TOKEN", "SLO%", "POLICY",
                    "ENDPOINT", "MODEL", "AGE"]


def test_the_samples_are_accepted_and_the_kustomize_base_builds(crd_plane: ControlPlane) -> None:
    namespace = crd_plane.create_namespace("samples")
    crd_plane.kubectl("apply", "-n", namespace, "--dry-run=server", "-f", str(REPO / "manifests" / "samples"))
    built = crd_plane.kubectl("kustomize", str(REPO / "manifests" / "base")).stdout
    kinds = [doc["kind"] for doc in yaml.safe_load_all(built) if doc]
    assert kinds.count("CustomResourceDefinition") == 1
    assert {"Deployment", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Namespace"} <= set(kinds)
    crd_plane.kubectl("apply", "-f", str(REPO / "manifests" / "base" / "namespace.yaml"))
    crd_plane.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=built)
