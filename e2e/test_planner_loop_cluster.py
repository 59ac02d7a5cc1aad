"""Issue 16's end-to-end scenario on the local cluster: the chart installed with the real helm
client, the operator as a host process (its image cannot be pulled here) with the planner loop
on, a service with autoscaling on both roles, Prometheus on loopback scraping the engines' and
agents' pages of the service (e2e/harness/servicepages.py: vLLM pages and agent energy
counters; the simulated engines and agents themselves are exercised by test_agent_loopback.py
and test_agent_discovery.py). The load ramps up, then down: the planner scales prefill and decode
and its pods land on their GPU products, the base clocks the agents read from the service follow
the plan, status.plan and status.energy fill. Prometheus stopped mid-run: Planned=False and no
replica change; restarted: planning resumes. `kubectl get/describe eals` of the run are kept
under the test's temp directory (printed on failure)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from e2e.harness.prometheus import PrometheusServer
from e2e.harness.servicepages import ServicePages
from joulescale_agent.discovery.desired import parse_service
from joulescale_operator.testing import OperatorProcess, apply, condition, get, pods_of, service_manifest

pytestmark = pytest.mark.e2e

CHART = Path(__file__).resolve().parents[1] / "helm" / "joulescale"
H100, A100 = "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"
NODE_PRODUCT = {"kwok-h100-0": H100, "kwok-h100-1": H100, "kwok-a100-0": A100}
INTERVAL_S = 10
LOW_RPS, HIGH_RPS = 2.0, 40.0

RELEASE = "js-planner"


@pytest.fixture
def planning(cluster: ControlPlane, prometheus: PrometheusServer, tmp_path: Path) -> Iterator[tuple[str, OperatorProcess]]:
    namespace = cluster.create_namespace("plan-e2e")
    cluster.ensure_nvidia_runtime_class()
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged")
    # The chart's CRD, RBAC and agents; its operator Deployment is off: the host process is it.
    # Its own release name: cluster-scoped objects (the agent's ClusterRole...) carry it, and the
    # chart test's release may still be installed in this cluster.
    cluster.helm("install", RELEASE, str(CHART), "-n", namespace, "--timeout", "120s",
                 "--set", "operator.enabled=false", "--set", f"operator.prometheusUrl={prometheus.url}")
    cluster.kubectl("wait", "--for=condition=Established", "crd/energyawarellmservices.joulescale.io",
                    "--timeout=60s")
    process = OperatorProcess(
        cluster.kubeconfig, tmp_path / "operator.log", resync_interval_s=1.0,
        extra_args=(f"--prometheus-url={prometheus.url}", "--planner-startup-seconds=10",
                    f"--planner-cache-dir={tmp_path / 'tables'}", f"--namespace={namespace}"),
    )
    process.start()
    try:
        yield namespace, process
    finally:
        process.stop()
        cluster.helm("uninstall", RELEASE, "-n", namespace, check=False)
        print(process.log_tail(60))


def replicas(cluster: ControlPlane, namespace: str) -> dict[str, int]:
    found = {}
    for role in ("prefill", "decode"):
        deployment = get(cluster, "deployment", f"llama-{role}", namespace)
        found[role] = int(deployment["spec"]["replicas"]) if deployment else -1
    return found


def live(cluster: ControlPlane, namespace: str) -> dict[str, Any]:
    obj = get(cluster, "eals", "llama", namespace)
    assert obj is not None
    return obj


def planned_true(cluster: ControlPlane, namespace: str) -> dict[str, Any] | None:
    obj = live(cluster, namespace)
    found = condition(obj, "Planned")
    status = obj.get("status", {})
    return obj if found and found["status"] == "True" and status.get("plan") and status.get("energy") else None


def placed_on_their_products(cluster: ControlPlane, namespace: str, wanted: dict[str, int]) -> bool:
    pods = [p for p in pods_of(cluster, namespace, "llama") if p["spec"].get("nodeName")
            and not p["metadata"].get("deletionTimestamp")]
    counts = {role: 0 for role in wanted}
    for pod in pods:
        role = pod["metadata"]["labels"]["joulescale.io/role"]
        assert NODE_PRODUCT[pod["spec"]["nodeName"]] == (H100 if role == "prefill" else A100)
        counts[role] += 1
    return counts == wanted


def agents_base_clocks(obj: dict[str, Any]) -> dict[str, int | None]:
    """The base clock each role's agent takes from the service (its own parsing: desired.py)."""
    service = parse_service(obj)
    assert service is not None
    assert service.status is not None
    plan = service.status.plan
    assert plan is not None
    return {"prefill": plan.prefill_base_clock_mhz, "decode": plan.decode_base_clock_mhz}


class EnginesFollowPods:
    """One engine page per scheduled pod of each role, as engines start and stop with their pods
    (the planner never shrinks a role some of whose ready engines it cannot read), and the clock
    the agents read back set to the base clock they take from the service (agents_base_clocks)."""

    def __init__(self, cluster: ControlPlane, namespace: str, pages: ServicePages, prometheus: PrometheusServer):
        self._args = (cluster, namespace, pages, prometheus)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        cluster, namespace, pages, prometheus = self._args
        seen: dict[str, int] = {}
        while not self._stop.wait(1.0):
            pods = [p for p in pods_of(cluster, namespace, "llama")
                    if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")]
            counts = {role: max(1, sum(p["metadata"]["labels"]["joulescale.io/role"] == role for p in pods))
                      for role in ("prefill", "decode")}
            if counts != seen:
                for role, n in counts.items():
                    pages.set_pods(namespace, "llama", role, n)
                prometheus.set_targets("pages", pages.targets())
                seen = counts
            obj = get(cluster, "eals", "llama", namespace)
            if obj is not None and (obj.get("status") or {}).get("plan"):
                for role, mhz in agents_base_clocks(obj).items():
                    if mhz:
                        pages.set_clock(namespace, "llama", role, mhz)

    def __enter__(self) -> EnginesFollowPods:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_the_planner_follows_the_load_holds_without_prometheus_and_resumes(
    cluster: ControlPlane, prometheus: PrometheusServer, planning: tuple[str, OperatorProcess], tmp_path: Path
) -> None:
    namespace, _operator = planning
    started = time.monotonic()
    with ServicePages() as pages, EnginesFollowPods(cluster, namespace, pages, prometheus):
        pages.add(namespace, "llama", rate_rps=LOW_RPS)
        prometheus.set_targets("pages", pages.targets())
        prefill = {"autoscaling": {"minReplicas": 1, "maxReplicas": 4}, "tensorParallelSize": 1,
                   "gpu": {"products": [H100]}}
        decode = {"autoscaling": {"minReplicas": 1, "maxReplicas": 4}, "tensorParallelSize": 1,
                  "gpu": {"products": [A100]}}
        apply(cluster, service_manifest("llama", namespace, prefill=prefill, decode=decode,
                                        energy={"planner": {"intervalSeconds": INTERVAL_S}}))

        first = cluster.wait_for(lambda: planned_true(cluster, namespace), timeout_s=150)
        plan = first["status"]["plan"]
        assert (plan["prefillReplicas"], plan["decodeReplicas"]) == (1, 1)
        cluster.wait_for(lambda: placed_on_their_products(cluster, namespace, {"prefill": 1, "decode": 1}), 60)

        pages.set_rate(namespace, "llama", HIGH_RPS)
        cluster.wait_for(lambda: replicas(cluster, namespace)["prefill"] >= 2, timeout_s=60)
        up = live(cluster, namespace)
        wanted = {"prefill": up["status"]["plan"]["prefillReplicas"], "decode": up["status"]["plan"]["decodeReplicas"]}
        assert replicas(cluster, namespace) == wanted
        cluster.wait_for(lambda: placed_on_their_products(cluster, namespace, wanted), 60)
        clocks = agents_base_clocks(up)
        assert clocks["prefill"] == up["status"]["plan"]["prefillBaseClockMHz"]
        assert all(clocks.values())
        time.sleep(INTERVAL_S)  # one more window, for the energy of the busy run
        (tmp_path / "busy-get.txt").write_text(cluster.kubectl("get", "eals", "-n", namespace, "-o", "wide").stdout)
        (tmp_path / "busy-describe.txt").write_text(cluster.kubectl("describe", "eals", "-n", namespace).stdout)

        prometheus.stop()
        pages.set_rate(namespace, "llama", LOW_RPS)
        cluster.wait_for(lambda: (c := condition(live(cluster, namespace), "Planned")) and c["status"] == "False",
                         timeout_s=3 * INTERVAL_S)
        assert condition(live(cluster, namespace), "Planned")["reason"] == "PrometheusUnavailable"  # type: ignore[index]
        held = replicas(cluster, namespace)
        time.sleep(2 * INTERVAL_S)
        assert replicas(cluster, namespace) == held
        (tmp_path / "down-describe.txt").write_text(cluster.kubectl("describe", "eals", "-n", namespace).stdout)

        prometheus.start()
        cluster.wait_for(lambda: planned_true(cluster, namespace), timeout_s=4 * INTERVAL_S)
        cluster.wait_for(lambda: replicas(cluster, namespace) == {"prefill": 1, "decode": 1}, timeout_s=12 * INTERVAL_S)
        cluster.wait_for(lambda: placed_on_their_products(cluster, namespace, replicas(cluster, namespace)), 60)
        (tmp_path / "after-get.txt").write_text(cluster.kubectl("get", "eals", "-n", namespace, "-o", "wide").stdout)
        (tmp_path / "after-describe.txt").write_text(cluster.kubectl("describe", "eals", "-n", namespace).stdout)
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert {"PlanChanged", "PrometheusUnavailable"} <= {e["reason"] for e in events}
    energy = live(cluster, namespace)["status"]["energy"]
    assert energy["joulesPerOutputToken"] > 0
    assert energy["prefill"]["averagePowerWatts"] > 0
    print(f"planner e2e wall time {time.monotonic() - started:.0f} s; outputs in {tmp_path}")
