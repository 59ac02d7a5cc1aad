"""How much prefill energy a policy that reacts to a batch only after it starts can save.

A clock picked for a batch applies ``reaction`` after the batch starts: in the metrics-only view
the batch shows in the next scrape (up to one scrape period, plus the scrape's delay), then the
clock settles; with the engine hook only the settle time; with gauges published at step ends (vLLM
V1, SGLang) never. Until then the batch runs at the clock the instance waited at (the *ready* clock).

Over static-max's realised prefill batches, for each (reaction, ready clock): the least prefill
energy when every batch runs its first ``reaction`` at the ready clock and the rest at the
cheapest clock that still lets each of its requests meet the TTFT SLO (its realised wait and KV
transfer included), or at f_max when none does; and how many requests that met the SLO under
static-max would miss it. Knock-on delays of slower batches on the queue behind them are ignored,
so the figures are optimistic: a lower bound on what such a policy spends. The compared policies'
prefill energy of the same run is printed alongside. Prints ONE JSON document.

    .venv/bin/python bench/prefill_bound.py [--trace azure-code] [--duration 1800]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence

from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile
from joulescale.twin.compare import compare
from joulescale.twin.request import SimRequest
from joulescale.twin.settings import CompareSettings

REACTIONS_MS = (0, 20, 60, 85, 110, 60_000)
"""0: clairvoyant; 60: the engine hook with a 50 ms settle plus 10 ms; 85 and 110: metrics-only
were the gauges live (no engine publishes them so) at a 50 ms scrape period, 10 ms delay and
50 ms settle, on average and at worst; 60000: never, metrics-only with the step-end gauges
engines publish (a batch shows only once done, so it runs wholly at the clock it started at)."""
READY_MHZ = (1980, 1800, 1650, 1500)


def _batches(requests: Sequence[SimRequest]) -> list[list[SimRequest]]:
    """Requests grouped by (first scheduled, prefill done): one step's, or with chunked prefill
    the requests a run of steps carried together (an approximation of a batch)."""
    grouped: dict[tuple[float, float], list[SimRequest]] = defaultdict(list)
    for request in requests:
        if request.first_token_s > 0:
            grouped[(round(request.prefill_start_s, 6), round(request.prefill_done_s, 6))].append(request)
    return list(grouped.values())


def _least_excess_j(profile: GpuProfile, batch: list[SimRequest], slo_s: float, reaction_s: float,
                    ready_mhz: int) -> tuple[float, int]:
    """(energy above idle, requests that newly miss) of one batch under the reaction rule."""
    clocks = profile.supported_sm_clocks_mhz
    top = clocks[-1]
    tokens = [r.prompt_tokens for r in batch]

    def net_w(clock_mhz: int) -> float:
        watts = physics.busy_power_watts(profile, "prefill", clock_mhz, len(batch)) - profile.idle_power_watts
        return profile.tensor_parallel_size * watts

    # Time each request may spend in the batch: SLO less its wait and its KV transfer.
    allowed_s = min(slo_s - (r.prefill_start_s - r.arrival_s) - (r.first_token_s - r.prefill_done_s) for r in batch)
    at_ready_s = physics.prefill_latency_s(profile, tokens, ready_mhz)
    if at_ready_s <= reaction_s:
        met = at_ready_s <= allowed_s or physics.prefill_latency_s(profile, tokens, top) > allowed_s
        return net_w(ready_mhz) * at_ready_s, 0 if met else len(batch)
    left = 1.0 - reaction_s / at_ready_s
    best_j: float | None = None
    for clock in clocks:
        total_s = reaction_s + left * physics.prefill_latency_s(profile, tokens, clock)
        if total_s <= allowed_s:
            energy_j = net_w(ready_mhz) * reaction_s + net_w(clock) * (total_s - reaction_s)
            best_j = energy_j if best_j is None else min(best_j, energy_j)
    if best_j is not None:
        return best_j, 0
    total_s = reaction_s + left * physics.prefill_latency_s(profile, tokens, top)
    energy_j = net_w(ready_mhz) * reaction_s + net_w(top) * (total_s - reaction_s)
    missed_before = physics.prefill_latency_s(profile, tokens, top) > allowed_s
    return energy_j, 0 if missed_before else len(batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trace", default="azure-code")
    parser.add_argument("--load", type=float, default=0.67)
    parser.add_argument("--duration", type=float, default=1800.0)
    parser.add_argument("--policies", default="static-max,biscale,joulescale")
    args = parser.parse_args()
    policies = tuple(args.policies.split(","))
    if "static-max" not in policies:
        policies = ("static-max", *policies)
    comparison = compare(CompareSettings(trace=args.trace, load=args.load, duration_s=args.duration,
                                         policies=policies))
    run = comparison.runs["static-max"]
    profile = run.prefill[0].gpu.profile
    slo_s = comparison.settings.slo.ttft_ms / 1000.0
    batches = _batches(run.requests)
    top = profile.max_sm_clock_mhz
    def top_w(prompts: int) -> float:
        return profile.tensor_parallel_size * (physics.busy_power_watts(profile, "prefill", top, prompts)
                                               - profile.idle_power_watts)

    at_fmax_j = sum(top_w(len(b)) * physics.prefill_latency_s(profile, [r.prompt_tokens for r in b], top)
                    for b in batches)
    idle_j = comparison.summaries["static-max"].prefill.total_j - at_fmax_j
    bounds = []
    for reaction_ms in REACTIONS_MS:
        for ready_mhz in READY_MHZ:
            excess_j, misses = 0.0, 0
            for batch in batches:
                energy_j, missed = _least_excess_j(profile, batch, slo_s, reaction_ms / 1000.0, ready_mhz)
                excess_j += energy_j
                misses += missed
            bounds.append({"reaction_ms": reaction_ms, "ready_mhz": ready_mhz,
                           "prefill_energy_j": round(idle_j + excess_j, 1), "new_misses": misses})
    json.dump({
        "trace": args.trace, "load": args.load, "duration_s": args.duration, "batches": len(batches),
        "prefill_energy_j": {name: round(summary.prefill.total_j, 1)
                             for name, summary in comparison.summaries.items()},
        "decode_energy_j": {name: round(summary.decode.total_j, 1) for name, summary in comparison.summaries.items()},
        "slo_attainment": {name: round(summary.slo_attainment, 4) for name, summary in comparison.summaries.items()},
        "bounds": bounds,
    }, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
