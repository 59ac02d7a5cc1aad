"""A change of TP degree must pay for itself; near-ties between shapes no longer stall the plan.

The tables are written by hand (the planner reads them through ``CandidateSource``): prefill
TP4 and TP2 instances whose cost per unit of capacity is nearly equal, so the program's
least-power shape swaps with the forecast, as TP2 and TP4 prefill do on H100 (docs/planner.md).
The program itself is the real one (cvxpy with HiGHS).
"""

from __future__ import annotations

from collections.abc import Sequence

from joulescale.control.policy import Slo
from joulescale.planning.candidates import Candidate, CandidateTable
from joulescale.planning.forecast import LengthMix
from joulescale.planning.placement import Allocation, Placement
from joulescale.planning.planner import PlanDecision, Planner
from joulescale.planning.settings import PlannerSettings, ReplicaBounds
from joulescale.planning.window import TrafficWindow

SLO = Slo(ttft_ms=600.0, tpot_ms=100.0)
GPU = "G"
PREFILL_TP4 = Candidate("prefill", "tp4", GPU, 4, 1980)
PREFILL_TP2 = Candidate("prefill", "tp2", GPU, 2, 1980)
DECODE_TP4 = Candidate("decode", "tp4", GPU, 4, 1980)


def table(candidate: Candidate, capacity: float, idle: float, base: float) -> CandidateTable:
    return CandidateTable(candidate, capacity, idle, base, 100.0, ((0.0, idle), (1.0, base + 100.0 * capacity)))


class HandSource:
    """Fixed tables: two TP2 prefill instances cost about what one TP4 does, for the same capacity."""

    def __init__(self) -> None:
        self._tables = [table(PREFILL_TP4, 2.0, 400.0, 450.0), table(PREFILL_TP2, 1.0, 200.0, 230.0),
                        table(DECODE_TP4, 20.0, 400.0, 500.0)]

    def candidates(self) -> Sequence[Candidate]:
        return [t.candidate for t in self._tables]

    def tables(self, mix: LengthMix, slo: Slo) -> list[CandidateTable]:
        return list(self._tables)


def window(index: int, rate: float) -> TrafficWindow:
    count = round(rate * 300.0)
    return TrafficWindow(index * 300.0, (index + 1) * 300.0, count, (1000,) * 50, (200,) * 50)


def running(prefill: Candidate, count: int) -> Placement:
    return Placement.of([Allocation(prefill, count), Allocation(DECODE_TP4, 1)])


def replay(plan: Planner, start: Placement, rates: Sequence[float]) -> list[PlanDecision]:
    current, decisions = start, []
    for i, rate in enumerate(rates):
        decision = plan.plan(window(i, rate), current, 300.0 * (i + 1))
        decisions.append(decision)
        current = decision.placement
    return decisions


def settings(budget: int = 64, payback_s: float | None = None) -> PlannerSettings:
    """No memory: the starting placement is not held (``test_planning_memory`` tests that)."""
    return PlannerSettings(SLO, {GPU: budget}, forecaster="last-window", shape_payback_s=payback_s, memory_s=0.0)


def test_a_proposal_flipping_between_near_equal_shapes_settles_on_the_running_one() -> None:
    # Load fell: 3 TP4 prefill run for 2.4-2.9 req/s. The least-power shape alternates (3 TP2 at
    # 2.4 req/s, 2 TP4 at 2.9 req/s with the start-up look-ahead), which before kept the
    # hysteresis from ever confirming; the running shape's own answer is 2 TP4 both times.
    plan = Planner(settings(), HandSource())
    decisions = replay(plan, running(PREFILL_TP4, 3), [2.4, 2.9] * 4)
    assert all(d.placement.shape("prefill") == {"tp4"} for d in decisions)
    changed = [i for i, d in enumerate(decisions) if d.changed]
    assert changed == [1]  # proposed twice in a row, then kept
    assert decisions[-1].placement.replicas("prefill") == 2
    assert "start-up energy" in decisions[0].reason


def test_a_shape_change_that_repays_its_start_up_is_taken_after_confirmation() -> None:
    # 3 TP2 save 210 W over 2 TP4 at 2.4 req/s: 63 kJ per 300 s interval does not repay the
    # 108 kJ their start-up draws (3 x 200 W x 180 s); over an hour (756 kJ) it does.
    plan = Planner(settings(payback_s=3600.0), HandSource())
    decisions = replay(plan, running(PREFILL_TP4, 3), [2.4, 2.4, 2.4])
    assert not decisions[0].changed
    assert decisions[1].changed
    assert decisions[1].placement == running(PREFILL_TP2, 3)
    assert "repaying" in decisions[1].reason


def test_a_shape_change_waits_when_old_and_new_replicas_overrun_the_budget() -> None:
    # 3 TP4 prefill + 1 TP4 decode hold all 16 GPUs: 3 TP2 could not start beside them.
    plan = Planner(settings(budget=16, payback_s=3600.0), HandSource())
    decisions = replay(plan, running(PREFILL_TP4, 3), [2.4, 2.4, 2.4])
    assert all(d.placement.shape("prefill") == {"tp4"} for d in decisions)
    assert decisions[-1].placement.replicas("prefill") == 2
    assert "budget 16" in decisions[0].reason


def test_a_shape_change_is_taken_when_the_running_shape_cannot_carry_the_load_once_confirmed() -> None:
    # At most 4 prefill replicas: 4 TP2 carry 4 req/s, 6 req/s needs TP4. The SLO is at risk, but
    # a change of shape is not taken at once: it restarts the role, so it is confirmed first.
    source = HandSource()
    plan = Planner(PlannerSettings(SLO, {GPU: 64}, forecaster="last-window", memory_s=0.0,
                                   replicas=ReplicaBounds(prefill_max=4)), source)
    decisions = replay(plan, running(PREFILL_TP2, 4), [5.0, 5.0])
    assert not decisions[0].changed
    assert "waits for confirmation" in decisions[0].reason
    assert decisions[1].changed
    assert decisions[1].placement.shape("prefill") == {"tp4"}
    assert "cannot carry" in decisions[1].reason


def test_an_infeasible_interval_keeps_the_running_placement() -> None:
    plan = Planner(settings(budget=16), HandSource())
    start = running(PREFILL_TP4, 3)
    decision = plan.plan(window(0, 40.0), start, 300.0)
    assert decision.infeasible is not None
    assert decision.placement == start
    assert not decision.changed
