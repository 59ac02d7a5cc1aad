"""The prefill clocks JouleScale derives once from its predictor and the profile's power curve.

Energy above idle power of a prefill batch, ``TP x (P(f) - P_idle) x t(f)``, is U-shaped in
the clock with a wide flat bottom (70B TP4: within 3 % from about 1000 to 1450 MHz). Two clocks
follow from it: the *sweet spot*, the lowest clock that is energy-optimal for some batch (below
it every batch is slower and costlier), and the *steady* clock, the highest clock still on the
flat bottom for every batch (the fastest clock whose extra speed costs almost nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from joulescale.control.context import PolicyContext
from joulescale.control.predictor import LatencyPredictor
from joulescale.control.search import lowest_energy_index, lowest_feasible_index
from joulescale.profiles import physics

_SMALLEST_BATCH_TOKENS = 128


def _batch_sizes(context: PolicyContext) -> list[int]:
    sizes = []
    tokens = _SMALLEST_BATCH_TOKENS
    while tokens <= context.token_budget:
        sizes.append(tokens)
        tokens *= 2
    return sizes or [context.token_budget]


def _net_energy(context: PolicyContext, predictor: LatencyPredictor, batch_tokens: int) -> Callable[[int], float]:
    profile = context.profile
    idle_watts = profile.idle_power_watts
    squared = float(batch_tokens * min(batch_tokens, 2048))

    prompts = physics.prompts_in_batch(batch_tokens, squared)

    def net_energy_j(clock_mhz: int) -> float:
        watts = physics.busy_power_watts(profile, "prefill", clock_mhz, prompts) - idle_watts
        return watts * predictor.prefill_s(batch_tokens, squared, clock_mhz)

    return net_energy_j


def prefill_sweet_spot_mhz(context: PolicyContext, predictor: LatencyPredictor) -> float:
    """The lowest clock that is energy-optimal (above idle power) for some batch size."""
    clocks = context.allowed_mhz
    best = float(clocks[-1])
    for tokens in _batch_sizes(context):
        best = min(best, clocks[lowest_energy_index(clocks, _net_energy(context, predictor, tokens))])
    return best


def prefill_steady_mhz(context: PolicyContext, predictor: LatencyPredictor, tolerance: float) -> int:
    """The highest allowed clock whose energy above idle stays within ``1 + tolerance`` of the
    least for every batch size (the top clock when the range ends inside the flat bottom)."""
    clocks = context.allowed_mhz
    steady_index = len(clocks) - 1
    for tokens in _batch_sizes(context):
        energy = _net_energy(context, predictor, tokens)
        least = lowest_energy_index(clocks, energy)
        limit_j = energy(clocks[least]) * (1.0 + tolerance)
        index = least
        while index + 1 < len(clocks) and energy(clocks[index + 1]) <= limit_j:
            index += 1
        steady_index = min(steady_index, index)
    return clocks[steady_index]


def lone_prompt_mhz(
    clocks_mhz: Sequence[int],
    predictors: Sequence[LatencyPredictor],
    prompt_tokens: int,
    budget_s: float,
    raised_after_s: float,
) -> int:
    """The lowest clock at which one prompt of ``prompt_tokens`` that starts alone is prefilled
    within the budget, when the clock is raised to the top ``raised_after_s`` after it starts (the
    policy's reaction: seeing the batch, then the clock's settle time), by the slowest of
    ``predictors``' predictions; the top clock when none does."""
    tokens = max(1, prompt_tokens)
    squared = float(tokens * tokens)
    top_mhz = clocks_mhz[-1]

    def slowest_s(clock_mhz: int) -> float:
        return max(p.prefill_s(tokens, squared, clock_mhz) for p in predictors)

    at_top_s = slowest_s(top_mhz)

    def latency_s(clock_mhz: int) -> float:
        alone_s = slowest_s(clock_mhz)
        if clock_mhz == top_mhz or alone_s <= raised_after_s:
            return alone_s
        return raised_after_s + (1.0 - raised_after_s / alone_s) * at_top_s

    index = lowest_feasible_index(clocks_mhz, latency_s, budget_s)
    return clocks_mhz[-1 if index is None else index]
