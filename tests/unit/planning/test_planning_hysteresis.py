"""Hysteresis: two intervals to confirm, at once under risk, look ahead over the start-up time."""

from __future__ import annotations

import pytest

from joulescale.planning.candidates import Candidate
from joulescale.planning.hysteresis import Hysteresis, lookahead_rate_rps
from joulescale.planning.placement import Allocation, Placement


def placement(prefill: int, decode: int) -> Placement:
    return Placement.of([Allocation(Candidate("prefill", "p", "G", 4, 1980), prefill),
                         Allocation(Candidate("decode", "p", "G", 4, 1980), decode)])


def test_a_new_plan_waits_for_a_second_interval() -> None:
    hysteresis = Hysteresis(confirm_intervals=2)
    running = placement(2, 1)
    kept, reason = hysteresis.decide(running, placement(1, 1), slo_at_risk=False)
    assert kept == running
    assert "1/2" in reason
    changed, _ = hysteresis.decide(running, placement(1, 1), slo_at_risk=False)
    assert changed == placement(1, 1)


def test_a_different_proposal_restarts_the_count() -> None:
    hysteresis = Hysteresis(confirm_intervals=2)
    running = placement(2, 1)
    hysteresis.decide(running, placement(1, 1), slo_at_risk=False)
    kept, _ = hysteresis.decide(running, placement(3, 1), slo_at_risk=False)
    assert kept == running
    changed, _ = hysteresis.decide(running, placement(3, 1), slo_at_risk=False)
    assert changed == placement(3, 1)


def test_an_slo_at_risk_changes_at_once() -> None:
    changed, reason = Hysteresis().decide(placement(1, 1), placement(3, 1), slo_at_risk=True)
    assert changed == placement(3, 1)
    assert "at risk" in reason


def test_under_risk_only_the_growth_is_taken_at_once_and_a_shrink_waits() -> None:
    hysteresis = Hysteresis(confirm_intervals=2)
    running = placement(1, 3)
    grown, reason = hysteresis.decide(running, placement(3, 1), slo_at_risk=True)
    assert grown == placement(3, 3)  # prefill grows now, decode is not shrunk in a hurry
    assert "the rest of the change waits" in reason
    kept, reason = hysteresis.decide(grown, placement(3, 1), slo_at_risk=True)
    assert kept == grown
    assert "1/2" in reason
    shrunk, _ = hysteresis.decide(grown, placement(3, 1), slo_at_risk=True)
    assert shrunk == placement(3, 1)


def test_only_the_roles_at_risk_grow_at_once() -> None:
    # TTFT missed (prefill at risk): a proposal that also grows decode grows prefill now only.
    hysteresis = Hysteresis(confirm_intervals=2)
    changed, _ = hysteresis.decide(placement(1, 3), placement(2, 4), slo_at_risk={"prefill"})
    assert changed == placement(2, 3)
    kept, reason = hysteresis.decide(placement(1, 3), placement(1, 4), slo_at_risk={"prefill"})
    assert kept == placement(1, 3)
    assert "1/2" in reason


def test_under_risk_a_change_of_shape_is_not_taken_at_once() -> None:
    running = placement(2, 1)
    tp8 = Placement.of([Allocation(Candidate("prefill", "p8", "G", 8, 1980), 2),
                        Allocation(Candidate("decode", "p", "G", 4, 1980), 1)])
    hysteresis = Hysteresis(confirm_intervals=2)
    kept, reason = hysteresis.decide(running, tp8, slo_at_risk=True)
    assert kept == running
    assert "1/2" in reason
    assert hysteresis.decide(running, tp8, slo_at_risk=True)[0] == tp8


def test_lookahead_extrapolates_a_rise_over_the_startup_and_never_lowers() -> None:
    # 2 -> 3 req/s over a 300 s interval; 180 s of start-up: 3 + 180 / 300 = 3.6 req/s.
    assert lookahead_rate_rps(3.0, 2.0, 3.0, 300.0, 180.0) == pytest.approx(3.6)
    assert lookahead_rate_rps(4.0, 2.0, 3.0, 300.0, 180.0) == pytest.approx(4.0)
    assert lookahead_rate_rps(3.0, 5.0, 3.0, 300.0, 180.0) == pytest.approx(3.0)
    assert lookahead_rate_rps(3.0, None, 3.0, 300.0, 180.0) == pytest.approx(3.0)


def clocked(prefill: int, mhz: int) -> Placement:
    return Placement.of([Allocation(Candidate("prefill", "p", "G", 4, mhz), prefill),
                         Allocation(Candidate("decode", "p", "G", 4, 1980), 1)])


def test_a_count_change_confirms_though_its_base_clock_wobbles() -> None:
    # The same replicas proposed twice, at two base clocks: the layout is what needs confirming.
    hysteresis = Hysteresis(confirm_intervals=2)
    running = clocked(2, 1980)
    kept, _ = hysteresis.decide(running, clocked(1, 1980), slo_at_risk=False)
    assert kept == running
    changed, _ = hysteresis.decide(running, clocked(1, 1500), slo_at_risk=False)
    assert changed == clocked(1, 1500)


def test_a_base_clock_alone_changes_at_once() -> None:
    changed, reason = Hysteresis().decide(clocked(2, 1980), clocked(2, 1500), slo_at_risk=False)
    assert changed == clocked(2, 1500)
    assert "base clocks" in reason


def test_two_shrinks_of_different_sizes_confirm_the_smaller() -> None:
    # A falling load: 4 prefill run, the proposals alternate between 2 and 3. Compared plan by
    # plan they never repeat; both agree on at least one fewer.
    hysteresis = Hysteresis(confirm_intervals=2)
    running = placement(4, 1)
    kept, _ = hysteresis.decide(running, placement(2, 1), slo_at_risk=False)
    assert kept == running
    changed, reason = hysteresis.decide(running, placement(3, 1), slo_at_risk=False)
    assert changed == placement(3, 1)
    assert "agree" in reason


def test_two_growths_confirm_the_smaller_and_opposite_changes_confirm_nothing() -> None:
    hysteresis = Hysteresis(confirm_intervals=2)
    running = placement(2, 1)
    hysteresis.decide(running, placement(4, 2), slo_at_risk=False)
    changed, _ = hysteresis.decide(running, placement(3, 3), slo_at_risk=False)
    assert changed == placement(3, 2)
    other = Hysteresis(confirm_intervals=2)
    other.decide(running, placement(3, 1), slo_at_risk=False)
    kept, _ = other.decide(running, placement(1, 1), slo_at_risk=False)
    assert kept == running
