"""Energy benchmark: the twin's policy comparison on the shipped traces.

Prints ONE JSON document: a list of ``joulescale twin compare`` outputs (azure-conv and
azure-code at loads 0.67 and 0.85), for each policy view asked (default: both the
metrics-only view and the engine-hook view, each entry says which in ``config.view``).

    .venv/bin/python bench/energy.py [--views metrics,rich] [--loads 0.67,0.85] [--duration S] [--seed N]

``--seed`` picks another window of each trace (0, the default, replays from the start): a
held-out slice to check that a change measured on the default windows holds elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys

from joulescale.twin import report
from joulescale.twin.compare import compare
from joulescale.twin.settings import DEFAULT_DURATION_S, CompareSettings

TRACES = ("azure-conv", "azure-code")
LOADS = (0.67, 0.85)
DURATION_S = {"azure-conv": DEFAULT_DURATION_S, "azure-code": 1800.0}
"""The code trace is so bursty that its SLO capacity is well under 1 req/s: 300 s would hold ~60
requests, whose P99 is their maximum, so it gets a longer window."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", default="metrics,rich")
    parser.add_argument("--duration", type=float, default=None, help="override both traces' windows")
    parser.add_argument("--loads", default=",".join(map(str, LOADS)), help="the loads to compare (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="another window of each trace (0: from the start)")
    args = parser.parse_args()
    results = []
    for view in args.views.split(","):
        for trace in TRACES:
            for load in (float(x) for x in args.loads.split(",")):
                duration_s = args.duration if args.duration is not None else DURATION_S[trace]
                comparison = compare(CompareSettings(trace=trace, load=load, duration_s=duration_s, seed=args.seed,
                                                     view="rich" if view == "rich" else "metrics"))
                results.append(report.to_json(comparison))
                print(f"{view} {trace} {load}: {report.conclusion(comparison)}", file=sys.stderr)
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
