"""The planner loop against a real kube-apiserver and a real Prometheus: the operator reads the
engines' and agents' series of a service, writes status.plan and status.energy, scales both
autoscaled roles with the load, keeps everything as it is while Prometheus is down
(Planned=False PrometheusUnavailable), and resumes by itself when it is back."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from e2e.harness.prometheus import PrometheusServer
from e2e.harness.servicepages import RolePage, ServicePages
from joulescale_operator.testing import OperatorProcess, apply, condition, free_port, get, service_manifest

pytestmark = pytest.mark.integration

H100 = "NVIDIA-H100-80GB-HBM3"
INTERVAL_S = 10
"""spec.energy.planner.intervalSeconds (its minimum): the window, and the pace of the test."""
LOW_RPS, HIGH_RPS = 2.0, 40.0
"""One prefill replica of Llama-8B TP1 on H100 meets the SLO at LOW_RPS and not at HIGH_RPS."""
PLAN_TIMEOUT_S = 120.0
"""The first plan computes the candidate tables (about 15 s here) after a full window."""


@pytest.fixture
def pages() -> Iterator[ServicePages]:
    with ServicePages() as served:
        yield served


@pytest.fixture
def planning_operator(
    crd_plane: ControlPlane, prometheus: PrometheusServer, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, int]]:
    metrics_port = free_port()
    process = OperatorProcess(
        crd_plane.kubeconfig, tmp_path / "operator.log", resync_interval_s=1.5,
        extra_args=(f"--prometheus-url={prometheus.url}", "--planner-startup-seconds=10",
                    f"--planner-cache-dir={tmp_path / 'tables'}", f"--metrics-port={metrics_port}"),
    )
    process.start()
    try:
        yield process, metrics_port
    finally:
        process.stop()
        print(process.log_tail(80))  # shown by pytest when the test failed


def replicas(plane: ControlPlane, namespace: str, name: str) -> dict[str, int]:
    found = {}
    for role in ("prefill", "decode"):
        deployment = get(plane, "deployment", f"{name}-{role}", namespace)
        found[role] = int(deployment["spec"]["replicas"]) if deployment else -1
    return found


def service(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    obj = get(plane, "eals", name, namespace)
    assert obj is not None
    return obj


def operator_metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_plans_follow_the_load_and_hold_while_prometheus_is_down(
    crd_plane: ControlPlane, prometheus: PrometheusServer, pages: ServicePages,
    planning_operator: tuple[OperatorProcess, int],
) -> None:
    operator, metrics_port = planning_operator
    namespace = crd_plane.create_namespace("plan")
    pages.add(namespace, "llama", rate_rps=LOW_RPS)
    prometheus.set_targets("pages", pages.targets())
    scaled = {"autoscaling": {"minReplicas": 1, "maxReplicas": 6}, "tensorParallelSize": 1, "gpu": {"products": [H100]}}
    apply(crd_plane, service_manifest("llama", namespace, prefill=scaled, decode=scaled,
                                      energy={"planner": {"intervalSeconds": INTERVAL_S}}))

    def planned() -> dict[str, Any] | None:
        obj = service(crd_plane, namespace, "llama")
        plan, energy = obj.get("status", {}).get("plan"), obj.get("status", {}).get("energy")
        ok = condition(obj, "Planned")
        return obj if plan and energy and ok and ok["status"] == "True" else None

    first = crd_plane.wait_for(planned, timeout_s=PLAN_TIMEOUT_S)
    plan, energy = first["status"]["plan"], first["status"]["energy"]
    assert (plan["prefillReplicas"], plan["decodeReplicas"]) == (1, 1)
    assert plan["prefillBaseClockMHz"] > 0
    assert plan["decodeBaseClockMHz"] > 0
    # The pages' agents draw idle power plus a fixed energy per request: energy follows from them.
    traits = RolePage(namespace, "llama", "prefill", LOW_RPS)
    expected_w = traits.idle_watts + traits.joules_per_request * LOW_RPS
    assert energy["prefill"]["averagePowerWatts"] == pytest.approx(expected_w, rel=0.25)
    assert energy["sloAttainment"] >= 0.98
    assert energy["joulesPerOutputToken"] > 0

    pages.set_rate(namespace, "llama", HIGH_RPS)
    crd_plane.wait_for(lambda: replicas(crd_plane, namespace, "llama")["prefill"] >= 2, timeout_s=60)
    up = service(crd_plane, namespace, "llama")["status"]["plan"]
    assert up["forecastRequestsPerSecond"] >= HIGH_RPS * 0.8
    assert replicas(crd_plane, namespace, "llama") == {"prefill": up["prefillReplicas"], "decode": up["decodeReplicas"]}

    prometheus.stop()
    pages.set_rate(namespace, "llama", LOW_RPS)  # were it seen, this would scale down
    down = crd_plane.wait_for(
        lambda: (c := condition(service(crd_plane, namespace, "llama"), "Planned")) and c["status"] == "False" and c,
        timeout_s=3 * INTERVAL_S,
    )
    assert down["reason"] == "PrometheusUnavailable"
    held = replicas(crd_plane, namespace, "llama")
    time.sleep(2 * INTERVAL_S)
    assert replicas(crd_plane, namespace, "llama") == held
    kept = service(crd_plane, namespace, "llama")["status"]["plan"]
    assert (kept["prefillReplicas"], kept["decodeReplicas"]) == (up["prefillReplicas"], up["decodeReplicas"])
    assert operator_metric(metrics_port, "joulescale_operator_prometheus_errors_total") >= 1

    prometheus.start()
    crd_plane.wait_for(lambda: planned() is not None, timeout_s=4 * INTERVAL_S)
    crd_plane.wait_for(lambda: replicas(crd_plane, namespace, "llama")["prefill"] == 1, timeout_s=8 * INTERVAL_S)
    events = json.loads(crd_plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    reasons = {e["reason"] for e in events}
    assert {"PlanChanged", "PrometheusUnavailable"} <= reasons
    assert operator_metric(metrics_port, "joulescale_operator_plan_changes_total") >= 2
    assert "Traceback" not in operator.log_tail(200)
