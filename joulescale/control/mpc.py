"""Prefill clock plans over a horizon of projected batches (docs/policies.md, "biscale" and "joulescale").

A problem is, per batch i and clock level l (ascending), its time t[i][l] and cost c[i][l]
(joules, possibly net of idle power), and per batch a deadline on the time from now to its
end. A plan picks one level per batch; only its first level is applied (receding horizon).
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

_EPSILON_J = 1e-9


@dataclass(frozen=True, slots=True)
class MpcProblem:
    times_s: list[list[float]]
    costs_j: list[list[float]]
    deadlines_s: list[float]

    def feasible(self, levels: list[int]) -> bool:
        elapsed = 0.0
        for i, level in enumerate(levels):
            elapsed += self.times_s[i][level]
            if elapsed > self.deadlines_s[i]:
                return False
        return True


def greedy_descent(problem: MpcProblem) -> list[int] | None:
    """BiScale: from all-top, repeatedly lower the one batch's level that saves the most energy
    while every deadline holds; None when even all-top misses a deadline."""
    horizon = len(problem.times_s)
    top = len(problem.times_s[0]) - 1
    levels = [top] * horizon
    slack: list[float] = []
    elapsed = 0.0
    for i in range(horizon):
        elapsed += problem.times_s[i][top]
        slack.append(problem.deadlines_s[i] - elapsed)
    if min(slack) < 0:
        return None
    while True:
        suffix_min = [0.0] * horizon
        running = math.inf
        for j in range(horizon - 1, -1, -1):
            running = min(running, slack[j])
            suffix_min[j] = running
        best, best_saving, best_delta = -1, _EPSILON_J, 0.0
        for i in range(horizon):
            level = levels[i]
            if level == 0:
                continue
            delta = problem.times_s[i][level - 1] - problem.times_s[i][level]
            saving = problem.costs_j[i][level] - problem.costs_j[i][level - 1]
            if delta <= suffix_min[i] and saving > best_saving:
                best, best_saving, best_delta = i, saving, delta
        if best < 0:
            return levels
        levels[best] -= 1
        for j in range(best, horizon):
            slack[j] -= best_delta


def priced_plan(problem: MpcProblem) -> list[int] | None:
    """JouleScale: the cheapest plan under one price on time (Lagrangian relaxation).

    At price p each batch picks the level minimising cost + p x time; raising p only raises
    levels, so feasibility is monotone in p and the smallest feasible price is found by binary
    search over the prices where some batch switches level; the slack left is then spent
    batch by batch. More slack (later deadlines) never raises the first batch's level.
    None when even all-top misses a deadline.
    """
    horizon = len(problem.times_s)
    top = len(problem.times_s[0]) - 1
    if not problem.feasible([top] * horizon):
        return None
    switches = [
        _switches(times, costs) for times, costs in zip(problem.times_s, problem.costs_j, strict=True)
    ]
    prices = sorted({0.0, *(price for breaks, _ in switches for price in breaks)})
    low, high = 0, len(prices) - 1
    if not problem.feasible(_plan_at(switches, prices[high])):
        return [top] * horizon
    while low < high:
        middle = (low + high) // 2
        if problem.feasible(_plan_at(switches, prices[middle])):
            high = middle
        else:
            low = middle + 1
    plan = _plan_at(switches, prices[low])
    if low == 0:
        return plan
    return _lower_in_order(problem, plan, _plan_at(switches, prices[low - 1]))


def _lower_in_order(problem: MpcProblem, plan: list[int], cheaper: list[int]) -> list[int]:
    """Spend the slack the single price leaves: move batches to the next cheaper plan's level,
    first batch first, while every deadline holds (one price moves identical batches together).

    Trying the first batch first keeps the applied clock monotone in the slack.
    """
    for i, level in enumerate(cheaper):
        if level < plan[i]:
            trial = plan.copy()
            trial[i] = level
            if problem.feasible(trial):
                plan = trial
    return plan


def _switches(times: list[float], costs: list[float]) -> tuple[list[float], list[int]]:
    """One batch's choice as a function of the price: at price >= breaks[k] it picks levels[k+1].

    The lower convex hull of its (time, cost) points from the cheapest level towards the
    fastest (levels ascend, times do not increase). Collinear points are dropped, so at a tie
    the faster level wins; of equal times the cheaper (then the lower) level stays.
    """
    start = min(range(len(costs)), key=lambda level: (costs[level], level))
    hull = [start]
    for level in range(start + 1, len(times)):
        if times[level] > times[hull[-1]]:
            continue
        if times[level] == times[hull[-1]]:
            if costs[level] >= costs[hull[-1]]:
                continue
            hull.pop()
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (costs[b] - costs[a]) * (times[b] - times[level]) >= (costs[level] - costs[b]) * (
                times[a] - times[b]
            ):
                hull.pop()
            else:
                break
        hull.append(level)
    breaks = [max(0.0, (costs[b] - costs[a]) / (times[a] - times[b])) for a, b in itertools.pairwise(hull)]
    return breaks, hull


def _plan_at(switches: list[tuple[list[float], list[int]]], price: float) -> list[int]:
    return [levels[bisect.bisect_right(breaks, price)] for breaks, levels in switches]
