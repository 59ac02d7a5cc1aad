"""The whole local cluster schedules GPU pods by product affinity onto kwok GPU nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from e2e.harness.workloads import gpu_deployment

pytestmark = pytest.mark.e2e

TRIVIAL_CHART = Path(__file__).parent / "fixtures" / "trivial-chart"


def pods(plane: ControlPlane, namespace: str, app: str) -> list[dict[str, Any]]:
    out = plane.kubectl("get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def test_gpu_nodes_carry_the_gpu_feature_discovery_labels(cluster: ControlPlane) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    products = sorted(n["metadata"]["labels"]["nvidia.com/gpu.product"] for n in nodes)

    assert products == ["NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-80GB-HBM3"]
    for node in nodes:
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_a_gpu_deployment_lands_on_h100_nodes_and_runs(cluster: ControlPlane) -> None:
    namespace = cluster.create_namespace("place")
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=gpu_deployment(
            "h100-engine", namespace, replicas=2, gpus_per_pod=4, product="NVIDIA-H100-80GB-HBM3"
        ),
    )

    def all_running() -> list[dict[str, Any]] | None:
        items = pods(cluster, namespace, "h100-engine")
        running = [p for p in items if p["status"].get("phase") == "Running"]
        return items if len(items) == 2 and len(running) == 2 else None

    placed = cluster.wait_for(all_running, timeout_s=90)

    assert {p["spec"]["nodeName"] for p in placed} <= {"kwok-h100-0", "kwok-h100-1"}


def test_a_product_no_node_has_stays_pending_with_a_failed_scheduling_event(cluster: ControlPlane) -> None:
    namespace = cluster.create_namespace("pending")
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=gpu_deployment("b200-engine", namespace, replicas=1, gpus_per_pod=4, product="NVIDIA-B200"),
    )

    def failed_scheduling() -> list[dict[str, Any]]:
        events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
        return [e for e in events if e.get("reason") == "FailedScheduling"]

    events = cluster.wait_for(failed_scheduling, timeout_s=90)
    (pod,) = pods(cluster, namespace, "b200-engine")

    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    assert "didn't match Pod's node affinity" in events[0]["message"]


def test_helm_renders_and_installs_a_chart(cluster: ControlPlane) -> None:
    namespace = cluster.create_namespace("helm")
    rendered = cluster.helm("template", "demo", str(TRIVIAL_CHART), "--set", "greeting=bonjour").stdout
    cluster.helm("install", "demo", str(TRIVIAL_CHART), "-n", namespace, "--wait", "--timeout", "60s")
    stored = json.loads(
        cluster.kubectl("get", "configmap", "demo-greeting", "-n", namespace, "-o", "json").stdout
    )

    assert "name: demo-greeting" in rendered
    assert 'greeting: "bonjour"' in rendered
    assert stored["data"] == {"greeting": "hello"}
