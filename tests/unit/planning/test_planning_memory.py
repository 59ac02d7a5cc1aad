"""The planner's memory: the burst rate its SLO percentile sees, the starting placement held for
a memory, and the longest prompt remembered (so TP2 is not proposed where it cannot hold it).

Tables are written by hand (``HandSource``); the program is the real one (cvxpy with HiGHS).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from joulescale.control.policy import Slo
from joulescale.planning.candidates import Candidate, CandidateTable
from joulescale.planning.forecast import LengthMix
from joulescale.planning.memory import TrafficMemory, request_weighted_quantile
from joulescale.planning.placement import Allocation, Placement
from joulescale.planning.planner import PlanDecision, Planner
from joulescale.planning.settings import PlannerSettings
from joulescale.planning.window import TrafficWindow, sub_window_counts

SLO = Slo(ttft_ms=600.0, tpot_ms=100.0, percentile=99)
GPU = "G"
PREFILL_TP4 = Candidate("prefill", "tp4", GPU, 4, 1980)
PREFILL_TP2 = Candidate("prefill", "tp2", GPU, 2, 1980)
DECODE_TP4 = Candidate("decode", "tp4", GPU, 4, 1980)
TP2_KV_TOKENS = 12_939


def table(candidate: Candidate, capacity: float, idle: float, base: float) -> CandidateTable:
    return CandidateTable(candidate, capacity, idle, base, 100.0, ((0.0, idle), (1.0, base + 100.0 * capacity)))


class HandSource:
    """TP2 prefill is cheaper per unit of capacity than TP4, but holds no prompt over its KV cache."""

    def __init__(self) -> None:
        self.asked: list[LengthMix] = []

    def candidates(self) -> Sequence[Candidate]:
        return [PREFILL_TP4, PREFILL_TP2, DECODE_TP4]

    def tables(self, mix: LengthMix, slo: Slo) -> list[CandidateTable]:
        self.asked.append(mix)
        tp2 = 1.0 if mix.longest_prompt_tokens <= TP2_KV_TOKENS else 0.0
        return [table(PREFILL_TP4, 2.0, 400.0, 450.0), table(PREFILL_TP2, tp2, 150.0, 180.0),
                table(DECODE_TP4, 20.0, 400.0, 500.0)]


def window(index: int, rate: float, longest_prompt: int = 1000, burst: float | None = None) -> TrafficWindow:
    """A 300 s window at ``rate``; with ``burst``, its arrivals crowd into the first minute at that rate."""
    count = round(rate * 300.0)
    prompts = (1000,) * 49 + (longest_prompt,)
    start = index * 300.0
    if burst is None:
        arrivals = [start + 300.0 * (i + 0.5) / count for i in range(count)]
    else:
        crowded = min(count, round(burst * 60.0))
        arrivals = ([start + 60.0 * (i + 0.5) / crowded for i in range(crowded)]
                    + [start + 60.0 + 240.0 * (i + 0.5) / (count - crowded) for i in range(count - crowded)])
    return TrafficWindow(start, start + 300.0, count, prompts, (200,) * 50,
                         sub_window_counts(arrivals, start, start + 300.0))


def running(prefill: Candidate, count: int) -> Placement:
    return Placement.of([Allocation(prefill, count), Allocation(DECODE_TP4, 1)])


def replay(plan: Planner, start: Placement, windows: Sequence[TrafficWindow]) -> list[PlanDecision]:
    current, decisions = start, []
    for w in windows:
        decision = plan.plan(w, current, w.end_s)
        decisions.append(decision)
        current = decision.placement
    return decisions


def settings(memory_s: float = 1800.0) -> PlannerSettings:
    return PlannerSettings(SLO, {GPU: 64}, forecaster="last-window", memory_s=memory_s)


def test_the_burst_rate_is_the_sub_window_rate_all_but_one_percent_of_requests_arrived_at_or_below() -> None:
    # 300 requests in a minute at 5 req/s, 240 over four minutes at 1 req/s: 56 % arrived in the burst.
    assert request_weighted_quantile([(5.0, 300), (1.0, 60), (1.0, 60), (1.0, 60), (1.0, 60)], 0.99) == 5.0
    # A burst holding under 1 % of the requests is what a P99 may miss.
    assert request_weighted_quantile([(5.0, 5), (1.0, 600)], 0.99) == 1.0
    assert request_weighted_quantile([], 0.99) == 0.0


def test_windows_count_arrivals_per_minute_and_check_them() -> None:
    assert sub_window_counts([0.0, 59.9, 60.0, 299.0, 300.0], 0.0, 300.0) == (2, 1, 0, 0, 2)
    built = TrafficWindow.from_requests(0.0, 120.0, [(t, 100, 10) for t in (1.0, 2.0, 3.0, 90.0)])
    assert built.sub_arrivals == (3, 1)
    assert [rate for rate, _ in built.sub_rates()] == [pytest.approx(3 / 60), pytest.approx(1 / 60)]
    with pytest.raises(ValueError, match="add up"):
        TrafficWindow(0.0, 120.0, 4, (), (), (1, 1))


def test_a_burst_is_remembered_for_the_memory_then_forgotten() -> None:
    memory = TrafficMemory(900.0, 99.0)
    memory.observe(window(0, 1.0, burst=4.0))
    for i in range(1, 3):
        memory.observe(window(i, 0.2))
        assert memory.burst_rps() == pytest.approx(4.0)
    memory.observe(window(3, 0.2))  # the burst's window ended 900 s before this one
    assert memory.burst_rps() == pytest.approx(0.2)


def test_after_a_burst_the_plan_keeps_the_burst_capacity_through_quiet_intervals_within_the_memory() -> None:
    # A minute at 5 req/s in an interval of 1.3 req/s on average, then 0.3 req/s: a mean-rate plan
    # shrinks to 1 TP4 prefill two intervals later and the next burst finds a replica starting.
    plan = Planner(settings(memory_s=1800.0), HandSource())
    quiet = [window(i, 0.3) for i in range(1, 6)]
    decisions = replay(plan, Placement(), [window(0, 1.3, burst=5.0), *quiet])
    assert all(d.placement.capacity_rps("prefill", {t.candidate: t for t in HandSource().tables(
        LengthMix.of([1000], [200]), SLO)}) >= 5.0 for d in decisions)
    forgetful = Planner(settings(memory_s=0.0), HandSource())
    shrunk = replay(forgetful, Placement(), [window(0, 1.3, burst=5.0), *quiet])
    assert shrunk[-1].placement.replicas("prefill") < decisions[-1].placement.replicas("prefill")


def test_the_starting_placement_is_held_for_one_memory_then_follows_the_load() -> None:
    plan = Planner(settings(memory_s=1200.0), HandSource())
    start = running(PREFILL_TP4, 3)
    decisions = replay(plan, start, [window(i, 0.5) for i in range(8)])
    held = [d.now_s for d in decisions if d.placement.replicas("prefill") == 3]
    assert held == [300.0, 600.0, 900.0, 1200.0, 1500.0]  # held until 300 + 1200 s, confirmed after
    assert decisions[-1].placement.replicas("prefill") < 3


def test_tp2_is_not_proposed_in_a_window_without_the_long_prompt_seen_within_the_memory() -> None:
    source = HandSource()
    plan = Planner(settings(memory_s=3600.0), source)
    decisions = replay(plan, Placement(), [window(0, 1.0, longest_prompt=14_050),
                                           *(window(i, 1.0) for i in range(1, 5))])
    assert all(d.placement.shape("prefill") == {"tp4"} for d in decisions)
    assert all(mix.longest_prompt_tokens > TP2_KV_TOKENS for mix in source.asked)
    forgetful = HandSource()  # a memory of one interval: the last window's mix alone (the rule before)
    replay(Planner(settings(memory_s=300.0), forgetful), Placement(),
           [window(0, 1.0, longest_prompt=14_050), *(window(i, 1.0) for i in range(1, 5))])
    assert forgetful.asked[-1].longest_prompt_tokens <= TP2_KV_TOKENS  # TP2 would be a candidate again
