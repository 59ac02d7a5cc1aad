"""Searches over ascending clock lists: lowest clock meeting a budget, lowest-energy clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def lowest_feasible_index(
    clocks_mhz: Sequence[int], latency_s: Callable[[int], float], budget_s: float, start: int = 0
) -> int | None:
    """Index of the lowest clock (from ``start``) whose latency fits the budget; None if none does.

    Binary search: latency does not increase with the clock (7 predictions for 110 clocks).
    """
    high = len(clocks_mhz) - 1
    low = min(start, high)
    if latency_s(clocks_mhz[high]) > budget_s:
        return None
    while low < high:
        middle = (low + high) // 2
        if latency_s(clocks_mhz[middle]) <= budget_s:
            high = middle
        else:
            low = middle + 1
    return low


def lowest_energy_index(
    clocks_mhz: Sequence[int], energy_j: Callable[[int], float], start: int | None = None
) -> int:
    """Index of the lowest-energy clock; energy is U-shaped (unimodal) in the clock.

    Walks downhill from ``start`` (a hint such as the previous answer, so a slowly changing
    batch costs about three evaluations); ties resolve to the lower clock, so the flat stretch
    above the power-cap clock resolves to its lowest clock.
    """
    last = len(clocks_mhz) - 1
    index = last // 2 if start is None else min(max(start, 0), last)
    here = energy_j(clocks_mhz[index])
    while index > 0:
        lower = energy_j(clocks_mhz[index - 1])
        if lower > here:
            break
        index, here = index - 1, lower
    while index < last:
        higher = energy_j(clocks_mhz[index + 1])
        if higher >= here:
            break
        index, here = index + 1, higher
    return index
