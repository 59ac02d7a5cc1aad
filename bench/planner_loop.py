"""The operator's planner loop at 100 services against a real Prometheus.

The parent starts a Prometheus (e2e.harness.prometheus) scraping the engine and agent pages of
100 services (e2e.harness.servicepages: vLLM pages and agent energy counters, each service at
its own steady rate), waits until a window of data exists, then runs the child: a process that
imports everything the operator runs with (joulescale_operator.handlers: kopf, the kubernetes
client, the planner, cvxpy) and builds the operator's PlannerLoop over the services, whose
status lives in memory (no apiserver: the pass is measured from reading Prometheus to the
status apply, the write excluded). One round warms the planner's candidate tables (one length
mix: every service has the same lengths); the next round is measured, one planning pass per
service. Prints one JSON document:
{"services": 100, "plan_s_per_service": {"p50", "p99"}, "peak_rss_mb", "cold_round_s"}.

Run: .venv/bin/python bench/planner_loop.py [--services 100]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

INTERVAL_S = 10
"""The services' spec.energy.planner.intervalSeconds: the window each pass reads."""
SCRAPE_S = 2.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def service_body(index: int) -> dict[str, Any]:
    scaled = {"autoscaling": {"minReplicas": 1, "maxReplicas": 8}, "tensorParallelSize": 1,
              "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}}
    return {
        "apiVersion": "joulescale.io/v1alpha1", "kind": "EnergyAwareLLMService",
        "metadata": {"name": f"svc-{index:03d}", "namespace": "bench", "generation": 1, "resourceVersion": "1"},
        "spec": {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}, "engine": {"image": "vllm/vllm-openai:v0.11.0"},
                 "prefill": scaled, "decode": scaled, "slo": {"ttftMs": 600, "tpotMs": 50},
                 "energy": {"planner": {"intervalSeconds": INTERVAL_S}}},
        "status": {"prefill": {"replicas": 1, "readyReplicas": 1}, "decode": {"replicas": 1, "readyReplicas": 1}},
    }


class MemoryStatus:
    """The services' stored objects; a status apply bumps resourceVersion."""

    def __init__(self, bodies: list[dict[str, Any]]) -> None:
        self.objects = {(b["metadata"]["namespace"], b["metadata"]["name"]): b for b in bodies}

    def get(self, ref: Any) -> dict[str, Any] | None:
        found = self.objects.get((ref.namespace, ref.name))
        return copy.deepcopy(found) if found else None

    def apply_status(
        self, ref: Any, status: dict[str, Any], *, manager_suffix: str = "", resource_version: str | None = None
    ) -> dict[str, Any]:
        obj = self.objects[(ref.namespace, ref.name)]
        for key, value in status.items():  # the planner's part: plan, energy, Planned, the roles' clocks
            merged = {**obj["status"].get(key, {}), **value} if key in ("prefill", "decode") else value
            obj["status"][key] = merged
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(obj)

    def patch_status_json(self, ref: Any, operations: list[dict[str, Any]]) -> None:
        """Never called: these services hold no status of an older operator."""


def child(url: str, services: int, cache_dir: Path) -> None:
    from datetime import UTC, datetime

    import joulescale_operator.handlers  # noqa: F401  everything the operator imports
    from joulescale.profiles import shipped_catalog
    from joulescale_operator.planloop.daemon import PlannerLoop
    from joulescale_operator.planloop.loop import PlanPass
    from joulescale_operator.planloop.opmetrics import OperatorMetrics
    from joulescale_operator.planloop.planner import CorePlanner
    from joulescale_operator.planloop.prometheus import PrometheusSource

    class Quiet:
        def warning(self, reason: str, message: str) -> None: ...

        def normal(self, reason: str, message: str) -> None: ...

    profiles = shipped_catalog()
    store = MemoryStatus([service_body(i) for i in range(services)])
    keys = sorted(store.objects)
    loop = PlannerLoop(store, PlanPass(PrometheusSource(url), CorePlanner(profiles, cache_dir), profiles),
                       lambda: keys, lambda key, obj: None, lambda body: Quiet(), lambda: datetime.now(UTC),
                       OperatorMetrics())
    started = time.perf_counter()
    for key in keys:
        loop.plan_service(key)
    cold = time.perf_counter() - started
    durations = []
    for key in keys:
        t0 = time.perf_counter()
        loop.plan_service(key)
        durations.append(time.perf_counter() - t0)
    planned = sum(1 for b in store.objects.values() if "plan" in b["status"])
    rss_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmHWM:"))
    print(json.dumps({"durations": durations, "cold_round_s": cold, "peak_rss_mb": rss_kb / 1024,
                      "planned": planned}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--child", nargs=2, metavar=("URL", "CACHE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.services, Path(args.child[1]))
        return 0
    from e2e.harness.prometheus import PrometheusServer
    from e2e.harness.servicepages import ServicePages

    with tempfile.TemporaryDirectory(prefix="planner-loop-") as tmp, ServicePages() as pages:
        for i in range(args.services):
            pages.add("bench", f"svc-{i:03d}", rate_rps=0.5 + 4.5 * i / max(1, args.services - 1))
        with PrometheusServer(Path(tmp) / "prom", scrape_interval_s=SCRAPE_S) as prom:
            prom.set_targets("pages", pages.targets())
            last = pages.targets()[-1]
            prom.wait_scraped(last.address, timeout_s=60, scrapes=1)
            time.sleep(INTERVAL_S + 2 * SCRAPE_S)  # a full window of data behind every pass
            run = subprocess.run(
                [sys.executable, __file__, "--services", str(args.services), "--child", prom.url, str(Path(tmp) / "tables")],
                capture_output=True, text=True, check=False, timeout=1800,
            )
    if run.returncode != 0:
        print(run.stderr[-3000:], file=sys.stderr)
        return 1
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    durations = measured["durations"]
    print(json.dumps({
        "services": args.services,
        "plan_s_per_service": {"p50": round(percentile(durations, 0.5), 4), "p99": round(percentile(durations, 0.99), 4)},
        "peak_rss_mb": round(measured["peak_rss_mb"], 1),
        "cold_round_s": round(measured["cold_round_s"], 1),
        "services_planned": measured["planned"],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
