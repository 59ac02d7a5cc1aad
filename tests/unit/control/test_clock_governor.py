"""Actuation rules (docs/policies.md) and the allowed clock set."""

from __future__ import annotations

import itertools

import pytest

from joulescale.control import (
    ClockBounds,
    ClockDecision,
    ClockGovernor,
    DecisionReason,
    NoAllowedClockError,
    allowed_clocks_mhz,
    group_clock_mhz,
    levels_mhz,
)
from joulescale.profiles import load_profile

CLOCKS = load_profile("h100-sxm-llama-70b-tp8").supported_sm_clocks_mhz
FIT = DecisionReason.SLO_FIT


def governor(min_mhz: int = 900, max_mhz: int = 1800) -> ClockGovernor:
    return ClockGovernor(CLOCKS, ClockBounds(min_mhz=min_mhz, max_mhz=max_mhz), min_hold_s=0.1)


def test_allowed_clocks_are_the_supported_ones_inside_both_ranges() -> None:
    allowed = allowed_clocks_mhz(CLOCKS, ClockBounds(min_mhz=100, max_mhz=1000))
    assert allowed[0] == 345
    assert allowed[-1] == 990
    assert allowed_clocks_mhz(CLOCKS, None) == CLOCKS


def test_bounds_that_exclude_every_clock_are_an_error() -> None:
    with pytest.raises(NoAllowedClockError, match="2000, 3000"):
        allowed_clocks_mhz(CLOCKS, ClockBounds(min_mhz=2000, max_mhz=3000))
    with pytest.raises(NoAllowedClockError):
        allowed_clocks_mhz(CLOCKS, ClockBounds(min_mhz=1500, max_mhz=1000))


def test_targets_are_clamped_to_the_range_and_snapped_up() -> None:
    gov = governor()
    assert gov.apply(ClockDecision(2500, FIT), 0.0, 1200).sm_clock_mhz == 1800
    assert gov.clamp_mhz(100) == 900
    assert gov.clamp_mhz(1201) == 1215


def test_no_change_when_the_target_is_the_current_clock() -> None:
    act = governor().apply(ClockDecision(1200, FIT), 0.0, 1200)
    assert not act.changed
    assert act.sm_clock_mhz == 1200


def test_a_new_clock_is_held_for_the_minimum_time() -> None:
    gov = governor()
    assert gov.apply(ClockDecision(1200, FIT), 0.0, 1500).changed
    held = gov.apply(ClockDecision(1000, FIT), 0.05, 1200)
    assert (held.changed, held.sm_clock_mhz, held.reason) == (False, 1200, DecisionReason.HOLD)
    assert not gov.apply(ClockDecision(1500, FIT), 0.05, 1200).changed
    assert gov.apply(ClockDecision(1000, FIT), 0.1, 1200).changed


def test_an_urgent_raise_skips_the_hold_but_an_urgent_drop_does_not() -> None:
    gov = governor()
    gov.apply(ClockDecision(1200, FIT), 0.0, 1500)
    raised = gov.apply(ClockDecision(1800, DecisionReason.SLO_AT_RISK, urgent=True), 0.01, 1200)
    assert (raised.changed, raised.sm_clock_mhz) == (True, 1800)
    dropped = gov.apply(ClockDecision(900, DecisionReason.SLO_FIT, urgent=True), 0.02, 1800)
    assert not dropped.changed


def test_a_current_clock_outside_the_range_is_corrected_even_while_holding() -> None:
    gov = governor()
    gov.apply(ClockDecision(1200, FIT), 0.0, 1500)
    assert gov.apply(ClockDecision(1000, FIT), 0.01, 1980).changed


def test_reset_forgets_the_hold() -> None:
    gov = governor()
    gov.apply(ClockDecision(1200, FIT), 0.0, 1500)
    gov.reset()
    assert gov.apply(ClockDecision(1000, FIT), 0.01, 1200).changed


def test_a_tp_group_runs_at_its_slowest_gpu() -> None:
    assert group_clock_mhz([1200, 1185, 1200, 1200]) == 1185
    with pytest.raises(ValueError, match="at least one GPU"):
        group_clock_mhz([])


def test_mpc_levels_span_the_range_evenly_and_end_at_the_top() -> None:
    levels = levels_mhz(CLOCKS, 7)
    assert len(levels) == 7
    assert (levels[0], levels[-1]) == (345, 1980)
    steps = [b - a for a, b in itertools.pairwise(levels)]
    assert max(steps) - min(steps) <= 15
    assert levels_mhz(CLOCKS, 7, low_mhz=1200)[0] == 1200
    assert levels_mhz(CLOCKS, 1) == (1980,)
