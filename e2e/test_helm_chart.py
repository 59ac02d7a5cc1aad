"""The Helm chart installs with the real helm client: CRD, operator, agent DaemonSet, RBAC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.harness.controlplane import ControlPlane

pytestmark = pytest.mark.e2e

CHART = Path(__file__).resolve().parents[1] / "helm" / "joulescale"


def can_i(plane: ControlPlane, service_account: str, verb: str, resource: str, namespace: str) -> bool:
    out = plane.kubectl(
        "auth", "can-i", verb, resource, f"--as={service_account}", "-n", namespace, check=False
    )
    return out.stdout.strip() == "yes"


def test_the_chart_installs_and_its_agent_runs_on_every_gpu_node(cluster: ControlPlane) -> None:
    namespace = cluster.create_namespace("chart")
    # The agent's pods name the nvidia runtime (the GPU Operator creates this RuntimeClass).
    cluster.ensure_nvidia_runtime_class()
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=privileged",
        "pod-security.kubernetes.io/warn=baseline",
        "pod-security.kubernetes.io/audit=baseline",
    )
    cluster.helm("lint", "--strict", str(CHART))
    cluster.helm("install", "js", str(CHART), "-n", namespace, "--timeout", "120s")
    cluster.wait_crd_established("energyawarellmservices.joulescale.io")

    def agent_pods_running() -> list[str] | None:
        out = cluster.kubectl(
            "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=agent", "-o", "json"
        )
        items = json.loads(out.stdout)["items"]
        running = [p["spec"]["nodeName"] for p in items if p["status"].get("phase") == "Running"]
        return running if len(running) == 3 else None

    nodes = cluster.wait_for(agent_pods_running, timeout_s=90)
    operator = f"system:serviceaccount:{namespace}:js-operator"
    agent = f"system:serviceaccount:{namespace}:js-agent"

    assert sorted(nodes) == ["kwok-a100-0", "kwok-h100-0", "kwok-h100-1"]
    assert cluster.kubectl("get", "deployment", "js-operator", "-n", namespace).returncode == 0
    assert can_i(cluster, operator, "create", "deployments.apps", "default")
    assert can_i(cluster, operator, "patch", "energyawarellmservices.joulescale.io/status", "default")
    assert not can_i(cluster, operator, "list", "secrets", "default")
    assert can_i(cluster, agent, "watch", "pods", "default")
    assert can_i(cluster, agent, "watch", "energyawarellmservices.joulescale.io", "default")
    assert not can_i(cluster, agent, "patch", "energyawarellmservices.joulescale.io", "default")
    assert can_i(cluster, agent, "watch", "replicasets.apps", "default")  # the owner chain
    assert can_i(cluster, agent, "watch", "deployments.apps", "default")
    assert not can_i(cluster, agent, "update", "replicasets.apps", "default")
    assert not can_i(cluster, agent, "create", "deployments.apps", "default")

