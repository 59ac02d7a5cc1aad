"""Twin speed: simulated seconds per wall second, 16 GPUs, azure-conv at load 0.67.

Runs the default policy (joulescale) in the metrics-only view, the demo's configuration, and
prints ONE JSON document. The capacity search is not timed (it is cached per configuration).

    .venv/bin/python bench/twin_speed.py [--policy joulescale] [--view metrics] [--duration 300] [--elastic]

``--elastic`` runs the same replay through the run whose replicas may change (``twin.elastic``),
with no change asked, so its cost over the fixed cluster shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from joulescale.profiles import load_profile
from joulescale.twin.capacity import CapacityCache
from joulescale.twin.compare import choose_split
from joulescale.twin.elastic import ScheduledScaler, simulate_elastic
from joulescale.twin.policies import policy_run_setup
from joulescale.twin.settings import DEFAULT_DURATION_S, CompareSettings
from joulescale.twin.simulator import RunResult, simulate
from joulescale.twin.traces import load_trace, scaled_window


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", default="joulescale")
    parser.add_argument("--view", default="metrics", choices=("metrics", "rich"))
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S)
    parser.add_argument("--elastic", action="store_true", help="through the elastic run, no replica change")
    args = parser.parse_args()
    settings = CompareSettings(trace="azure-conv", load=0.67, duration_s=args.duration, gpus=16, view=args.view)
    profile = load_profile(settings.profile)
    trace = load_trace(settings.trace)
    cluster, capacity, _ = choose_split(trace, settings, profile, 0.0, CapacityCache(None))
    if capacity is None:
        raise SystemExit("no rate meets the SLO on this configuration")
    window = scaled_window(trace, capacity.rate_scale * settings.load, settings.duration_s)
    setup = policy_run_setup(args.policy, cluster, settings.slo, None)
    started = time.perf_counter()
    result: RunResult
    if args.elastic:
        if args.view != "metrics":
            raise SystemExit("the elastic run simulates the metrics view")
        result = simulate_elastic(window, setup.cluster, lambda role, _profile, _base: setup.control(role, 0),
                                  ScheduledScaler(()), startup_s=0.0)
    else:
        result = simulate(window, setup.cluster, setup.control)
    wall_s = time.perf_counter() - started
    json.dump({
        "trace": "azure-conv",
        "gpus": cluster.gpus,
        "simulated_seconds_per_wall_second": result.end_s / wall_s,
        "policy": args.policy,
        "view": args.view,
        "elastic": args.elastic,
        "simulated_s": result.end_s,
        "wall_s": wall_s,
        "requests": len(window),
        "decisions": result.decisions,
        "prefill_instances": cluster.prefill_instances,
        "decode_instances": cluster.decode_instances,
    }, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
