"""Issue 16's end-to-end scenario on the local cluster, with the processes that run in production.

- The chart installed with the real helm client; the operator as a host process (its image
  cannot be pulled here) with the planner loop on; a service with autoscaling on both roles.
- Every kwok engine pod gets a simulated engine process serving at its pod IP (kwok hands out
  loopback addresses) and every GPU node holding one gets a real node agent process with
  Kubernetes discovery and a fake kubelet's PodResources (e2e/harness/podengines.py).
- A load generator sends a ramp (low, high, low) through the engines' HTTP APIs, spread over the
  pods serving at the time (e2e/harness/rampload.py). A real Prometheus scrapes the engines'
  and the agents' own /metrics.

The planner scales prefill and decode up and down and its pods land on their GPU products; each
agent's clocks (its /metrics) follow status.plan's base clock of its pod's role (the service runs
the ``static`` policy: the planned base clock is the clock). A plan below the GPU's top clock is
locked and read back; at the top clock the agent leaves an unlocked GPU alone (it runs at its
default, boost, clock: the top one), and one it had locked lower it locks at the top. The
planner's memory (shortened here to two intervals, ``memorySeconds``) holds the starting
placement, at the top clocks, for one memory: the low load's own plan, below the top clocks,
follows it, and the agents lock at it. status.plan and status.energy fill from the scraped
series. Prometheus stopped mid-run: Planned=False
PrometheusUnavailable and no replica change over two failed planning passes; restarted: planning
resumes and the load's fall scales both roles back. `kubectl get/describe eals` of the run are
kept under the test's temp directory, and appended to $JOULESCALE_E2E_KEEP when it is set.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from e2e.harness.agentprocs import free_port, http_get, metric_value
from e2e.harness.controlplane import ControlPlane
from e2e.harness.podengines import PodEngines
from e2e.harness.prometheus import PrometheusServer
from e2e.harness.rampload import RampLoad
from joulescale.profiles import shipped_catalog
from joulescale_operator.testing import OperatorProcess, apply, condition, get, pods_of, service_manifest

pytestmark = pytest.mark.e2e

CHART = Path(__file__).resolve().parents[1] / "helm" / "joulescale"
H100, A100 = "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"
PRODUCT_OF_ROLE = {"prefill": H100, "decode": A100}
INTERVAL_S = 10
MEMORY_S = 2 * INTERVAL_S
"""The planner's memory (default six intervals): two intervals keep it in play (the starting
placement held, the busy phase's rate remembered) and the ramp-down within the test's budget."""
PROMPT_TOKENS, OUTPUT_TOKENS = 4000, 128
SLO = {"ttftMs": 1000, "tpotMs": 25}
"""Both on vLLM's bucket edges (1 s TTFT, 25 ms inter-token): status.energy's attainment is a
lower bound from the histograms, and a target between two edges counts only the bucket below."""
LOW_RPS, HIGH_RPS = 1.0, 12.0
"""At these lengths and SLO one H100 prefill serves about 9.9 req/s at its top clock and one
A100 decode about 9.5 (the twin's candidate tables): the high rate needs two of each, the low
one one."""
AGENT_ARGS = ("--scrape-hz=5", "--scrape-timeout-s=1.0", "--parse-budget-s=0.5", "--stale-after-s=3.0")
"""The agents' settings for a two-core host shared by a whole cluster: the static policy holds one
clock, so five engine reads a second suffice (the default is 20), and a simulated engine whose
process waits for a core answers its page in up to a second, where a real vLLM answers in
milliseconds. With the defaults (0.2 s, 0.1 s, 1 s) the agents here went to fail-safe and
released their locks under the high load, as they should when an engine goes silent."""

RELEASE = "js-planner"


@pytest.fixture
def planning(cluster: ControlPlane, prometheus: PrometheusServer, tmp_path: Path) -> Iterator[tuple[str, OperatorProcess, int]]:
    namespace = cluster.create_namespace("plan-e2e")
    cluster.ensure_nvidia_runtime_class()
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged")
    # The chart's CRD, RBAC and agents; its operator Deployment is off: the host process is it.
    # Its own release name: cluster-scoped objects (the agent's ClusterRole...) carry it, and the
    # chart test's release may still be installed in this cluster.
    cluster.helm("install", RELEASE, str(CHART), "-n", namespace, "--timeout", "120s",
                 "--set", "operator.enabled=false", "--set", f"operator.prometheusUrl={prometheus.url}")
    cluster.wait_crd_established("energyawarellmservices.joulescale.io")
    metrics_port = free_port()
    process = OperatorProcess(
        cluster.kubeconfig, tmp_path / "operator.log", resync_interval_s=1.0,
        extra_args=(f"--prometheus-url={prometheus.url}", "--planner-startup-seconds=10",
                    f"--planner-cache-dir={tmp_path / 'tables'}", f"--namespace={namespace}",
                    f"--metrics-port={metrics_port}"),
    )
    process.start()
    try:
        yield namespace, process, metrics_port
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


def running_pods(cluster: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    return [p for p in pods_of(cluster, namespace, "llama") if p["spec"].get("nodeName")
            and not p["metadata"].get("deletionTimestamp")]


def node_products(cluster: ControlPlane) -> dict[str, str]:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: n["metadata"]["labels"].get("nvidia.com/gpu.product", "") for n in nodes}


def placed_and_served(cluster: ControlPlane, namespace: str, engines: PodEngines, wanted: dict[str, int]) -> bool:
    """Each role has ``wanted`` pods, each on a node of its GPU product and served by its own
    engine process at its pod IP; no engine serves a pod that is gone."""
    pods = running_pods(cluster, namespace)
    counts = {role: 0 for role in wanted}
    for pod in pods:
        role = pod["metadata"]["labels"]["joulescale.io/role"]
        assert node_products(cluster)[pod["spec"]["nodeName"]] == PRODUCT_OF_ROLE[role], pod["metadata"]["name"]
        counts[role] += 1
    serving = engines.serving()
    return counts == wanted and set(serving) == {p["metadata"]["name"] for p in pods} and all(
        serving[p["metadata"]["name"]].ip == p["status"].get("podIP") for p in pods)


def top_clock_mhz(role: str) -> int:
    """The highest supported clock of the role's GPU product (the simulated GPUs' profile)."""
    return next(p for p in shipped_catalog().profiles if p.gpu_product == PRODUCT_OF_ROLE[role]).max_sm_clock_mhz


def agent_state_off_plan(plan_mhz: object, top_mhz: int, target: float | None, read_back: float | None) -> str | None:
    """How an agent's clocks of one GPU differ from what it does at a planned clock (None: they
    do not). Below the top clock it locks the plan and reads it back. At the top clock it locks
    nothing on a GPU that runs unlocked: its loop reads an unlocked GPU as at the top supported
    clock, and the governor changes nothing at the current clock (the target gauge is then
    absent, or 0 after a release); a GPU it had locked lower it locks at the top. Either way the
    GPU reads back the top clock: the simulated GPUs' default clock is their top (boost) one."""
    if plan_mhz is None:
        return "no plan"
    if plan_mhz != top_mhz:
        return None if target == plan_mhz and read_back == plan_mhz else "locked at the plan"
    return None if target in (None, 0, top_mhz) and read_back == top_mhz else "unlocked or locked at the top clock"


def clocks_off_plan(cluster: ControlPlane, namespace: str, engines: PodEngines) -> list[str]:
    """What differs from status.plan's base clock of each serving pod's role, on its GPUs, in
    the locked and the read-back clock its node's agent reports on /metrics ([]: nothing)."""
    plan = live(cluster, namespace).get("status", {}).get("plan") or {}
    wanted = {role: plan.get(f"{role}BaseClockMHz") for role in ("prefill", "decode")}
    serving = engines.serving()
    if not serving:
        return ["no engine serves"]
    pages = {node: engines.agent_page(node) for node in {e.node for e in serving.values()}}
    off = []
    for pod, engine in sorted(serving.items()):
        for gpu in engine.gpus:
            labels = {"gpu": gpu, "pod": pod, "role": engine.role, "service": "llama", "namespace": namespace}
            target, read_back = (metric_value(pages[engine.node], name, **labels) for name in (
                "joulescale_gpu_target_sm_clock_mhz", "joulescale_gpu_sm_clock_mhz"))
            top = top_clock_mhz(engine.role)
            why = agent_state_off_plan(wanted[engine.role], top, target, read_back)
            if why is not None:
                off.append(f"{pod}: target {target}, read back {read_back}; plan {wanted[engine.role]}, top {top}: "
                           f"wanted {why}")
    return off


def planned_below_top(cluster: ControlPlane, namespace: str) -> dict[str, int] | None:
    """The plan's base clocks when both roles' are below their GPUs' top clocks; else None."""
    plan = live(cluster, namespace).get("status", {}).get("plan") or {}
    clocks = {role: plan.get(f"{role}BaseClockMHz") for role in ("prefill", "decode")}
    below = all(isinstance(c, int) and c < top_clock_mhz(role) for role, c in clocks.items())
    return {role: int(c) for role, c in clocks.items() if c is not None} if below else None


def agents_follow_the_plan(cluster: ControlPlane, namespace: str, engines: PodEngines) -> dict[str, int]:
    """Waits until every agent holds its pods' GPUs at the plan's base clocks; returns them."""
    eventually_equal(lambda: clocks_off_plan(cluster, namespace, engines), [], timeout_s=30)
    plan = live(cluster, namespace)["status"]["plan"]
    return {role: int(plan[f"{role}BaseClockMHz"]) for role in ("prefill", "decode")}


def busy_and_settled(cluster: ControlPlane, namespace: str, engines: PodEngines, after_s: float) -> dict[str, Any] | None:
    """The service when its plan's replicas are all ready, each on its product with its engine,
    and status.energy's window ended after ``after_s``; else None."""
    obj = planned_true(cluster, namespace)
    ready = condition(obj, "Ready") if obj is not None else None
    if obj is None or ready is None or ready["status"] != "True" or observed_at(obj) <= after_s:
        return None
    plan = obj["status"]["plan"]
    wanted = {role: plan[f"{role}Replicas"] for role in ("prefill", "decode")}
    return obj if placed_and_served(cluster, namespace, engines, wanted) else None


def series_in_prometheus(prometheus: PrometheusServer, namespace: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per role: how many engines' TTFT histograms and how many agents' GPU energy counters
    Prometheus holds now."""
    def count(metric: str) -> dict[str, int]:
        found = prometheus.query(f'count by (role) ({metric}{{namespace="{namespace}"}})')
        return {r["metric"]["role"]: int(float(r["value"][1])) for r in found}

    return count("vllm:time_to_first_token_seconds_count"), count("joulescale_gpu_energy_joules_total")


def unavailable_passes(metrics_port: int, namespace: str) -> float:
    _, page = http_get(f"http://127.0.0.1:{metrics_port}/metrics", timeout_s=2.0)
    found = metric_value(page, "joulescale_operator_plan_passes_total", namespace=namespace, outcome="unavailable")
    return found or 0.0


def observed_at(obj: dict[str, Any]) -> float:
    stamp = obj["status"]["energy"]["observedAt"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def eventually_equal(read: Callable[[], object], wanted: object, timeout_s: float) -> None:
    """Poll until ``read()`` equals ``wanted``; fail with the last value read."""
    deadline = time.monotonic() + timeout_s
    while (last := read()) != wanted:
        assert time.monotonic() < deadline, f"after {timeout_s:.0f} s: {last!r}, wanted {wanted!r}"
        time.sleep(0.5)


class Keep:
    """`kubectl get/describe eals` snapshots: under the test's temp dir, and appended to
    $JOULESCALE_E2E_KEEP when set (for the release note)."""

    def __init__(self, cluster: ControlPlane, namespace: str, folder: Path) -> None:
        self._cluster, self._namespace, self._folder = cluster, namespace, folder
        self._keep = os.environ.get("JOULESCALE_E2E_KEEP")

    def snapshot(self, moment: str, *kinds: str) -> None:
        for kind in kinds:
            args = ("get", "eals", "-n", self._namespace, "-o", "wide") if kind == "get" else (
                "describe", "eals", "-n", self._namespace)
            text = self._cluster.kubectl(*args).stdout
            (self._folder / f"{moment}-{kind}.txt").write_text(text)
            if self._keep:
                with open(self._keep, "a", encoding="utf-8") as out:
                    out.write(f"### {moment}: kubectl {' '.join(args)}\n{text}\n")


def test_the_planner_follows_the_load_holds_without_prometheus_and_resumes(
    cluster: ControlPlane, prometheus: PrometheusServer, planning: tuple[str, OperatorProcess, int], tmp_path: Path
) -> None:
    namespace, _operator, metrics_port = planning
    started = time.monotonic()
    phases: list[str] = []

    def mark(phase: str) -> None:
        phases.append(f"{phase} {time.monotonic() - started:.0f} s")

    keep = Keep(cluster, namespace, tmp_path)
    workdir = tmp_path / "processes"
    workdir.mkdir()
    engine_port = free_port()
    engines = PodEngines(cluster, namespace, "llama", prometheus, workdir, agent_args=AGENT_ARGS)
    load = RampLoad(engines.urls, PROMPT_TOKENS, OUTPUT_TOKENS)
    try:
        with engines, load:
            roles = {role: {"autoscaling": {"minReplicas": 1, "maxReplicas": 3}, "tensorParallelSize": 1,
                            "gpu": {"products": [PRODUCT_OF_ROLE[role]]}} for role in ("prefill", "decode")}
            apply(cluster, service_manifest(
                "llama", namespace, **roles, slo=SLO, engine={"image": "vllm/vllm-openai:v0.11.0", "port": engine_port},
                energy={"policy": "static", "planner": {"intervalSeconds": INTERVAL_S, "memorySeconds": MEMORY_S}}))
            load.rate_rps = LOW_RPS

            first = cluster.wait_for(lambda: planned_true(cluster, namespace), timeout_s=150)
            assert (first["status"]["plan"]["prefillReplicas"], first["status"]["plan"]["decodeReplicas"]) == (1, 1)
            cluster.wait_for(lambda: placed_and_served(cluster, namespace, engines, {"prefill": 1, "decode": 1}), 60)
            first_clocks = agents_follow_the_plan(cluster, namespace, engines)
            mark("first plan followed")
            # The starting placement is held for one memory; then the low load's own plan, below
            # the top clocks (one replica each has ample head-room), and the agents lock at it.
            cluster.wait_for(lambda: planned_below_top(cluster, namespace), timeout_s=MEMORY_S + 6 * INTERVAL_S)
            low_clocks = agents_follow_the_plan(cluster, namespace, engines)
            assert all(mhz < top_clock_mhz(role) for role, mhz in low_clocks.items()), low_clocks
            assert replicas(cluster, namespace) == {"prefill": 1, "decode": 1}
            mark("low plan followed")

            load.rate_rps = HIGH_RPS
            cluster.wait_for(lambda: (r := replicas(cluster, namespace))["prefill"] >= 2 and r["decode"] >= 2,
                             timeout_s=10 * INTERVAL_S)
            up_at = time.time()
            mark("scaled up")
            # The busy state: the plan's replicas all ready, placed and served, and status.energy
            # of a window that ends an interval after the scale-up (the busy run's energy).
            busy = cluster.wait_for(lambda: busy_and_settled(cluster, namespace, engines, up_at + INTERVAL_S),
                                    timeout_s=6 * INTERVAL_S)
            up = {role: busy["status"]["plan"][f"{role}Replicas"] for role in ("prefill", "decode")}
            assert replicas(cluster, namespace) == up
            busy_clocks = agents_follow_the_plan(cluster, namespace, engines)
            eventually_equal(lambda: series_in_prometheus(prometheus, namespace), (up, up), timeout_s=30)
            keep.snapshot("busy", "get", "describe")
            mark("busy settled")

            prometheus.stop()
            load.rate_rps = LOW_RPS
            cluster.wait_for(lambda: (c := condition(live(cluster, namespace), "Planned")) and c["status"] == "False",
                             timeout_s=3 * INTERVAL_S)
            assert condition(live(cluster, namespace), "Planned")["reason"] == "PrometheusUnavailable"  # type: ignore[index]
            held, passes = replicas(cluster, namespace), unavailable_passes(metrics_port, namespace)
            mark("Planned=False")

            def held_over_two_passes() -> bool:
                assert replicas(cluster, namespace) == held, "a replica count changed without Prometheus"
                return unavailable_passes(metrics_port, namespace) >= passes + 2

            cluster.wait_for(held_over_two_passes, timeout_s=4 * INTERVAL_S, interval_s=1.0)
            keep.snapshot("down", "describe")
            mark("held two passes")

            prometheus.start()
            cluster.wait_for(lambda: planned_true(cluster, namespace), timeout_s=4 * INTERVAL_S)
            mark("planning again")
            cluster.wait_for(lambda: replicas(cluster, namespace) == {"prefill": 1, "decode": 1}, timeout_s=12 * INTERVAL_S)
            mark("scaled down")
            cluster.wait_for(lambda: placed_and_served(cluster, namespace, engines, {"prefill": 1, "decode": 1}), 60)
            after_clocks = agents_follow_the_plan(cluster, namespace, engines)
            keep.snapshot("after", "get", "describe")
        assert engines.failures == [], engines.failures
    except BaseException:
        print(engines.logs())
        print(f"harness failures: {engines.failures}; poll errors: {engines.poll_errors}")
        raise
    finally:
        print(f"load: {load.summary()}; engines started: {engines.engines_started}; "
              f"polls retried: {len(engines.poll_errors)}")

    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert {"PlanChanged", "PrometheusUnavailable"} <= {e["reason"] for e in events}
    assert load.completed > 0
    energy = busy["status"]["energy"]
    assert energy["joulesPerOutputToken"] > 0
    for role in ("prefill", "decode"):
        idle = shipped_catalog().match(PRODUCT_OF_ROLE[role], "meta-llama/Llama-3.1-8B-Instruct", 1)
        assert idle is not None
        # At least one GPU of the role was powered through the window: at least its idle power.
        assert energy[role]["averagePowerWatts"] >= idle.idle_power_watts, (role, energy)
    print(f"clocks (prefill, decode): first {first_clocks}, low {low_clocks}, busy {busy_clocks}, after {after_clocks}")
    print(f"planner e2e wall time {time.monotonic() - started:.0f} s ({', '.join(phases)}); outputs in {tmp_path}")
