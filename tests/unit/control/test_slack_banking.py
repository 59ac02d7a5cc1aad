"""Decode slack: per request (rich view) and from measured iteration times (metrics-only)."""

from __future__ import annotations

import pytest

from joulescale.control.slack import SlackBank, rich_decode_budget_s
from joulescale.engines.observation import DecodeProgress

from .helpers import decode_obs

TARGET_S = 0.09


def test_requests_ahead_of_target_widen_the_budget_by_their_bank_over_the_spend_horizon() -> None:
    ahead = [DecodeProgress(output_tokens=100, decode_seconds=100 * 0.07, context_tokens=500)]
    assert rich_decode_budget_s(ahead, TARGET_S, 8, 1.0) == pytest.approx(TARGET_S + 100 * 0.02 / 8)


def test_the_tightest_request_sets_the_budget_and_a_late_one_makes_it_catch_up() -> None:
    batch = [
        DecodeProgress(output_tokens=100, decode_seconds=5.0, context_tokens=500),
        DecodeProgress(output_tokens=10, decode_seconds=10 * 0.1, context_tokens=500),
    ]
    assert rich_decode_budget_s(batch, TARGET_S, 8, 1.0) == pytest.approx(TARGET_S - 10 * 0.01 / 8)


def test_a_new_request_has_no_bank_and_the_budget_is_capped() -> None:
    assert rich_decode_budget_s([DecodeProgress(0, 0.0, 100)], TARGET_S, 8, 1.0) == TARGET_S
    rich = [DecodeProgress(1000, 1.0, 100)]
    assert rich_decode_budget_s(rich, TARGET_S, 8, 2 * TARGET_S) == 2 * TARGET_S


def test_the_bank_grows_with_fast_iterations_up_to_its_cap() -> None:
    bank = SlackBank(cap_tokens=2.0, decay=1.0, spend_tokens=8)
    bank.update(decode_obs(iterations_delta=5, mean_iteration_s=0.07), TARGET_S)
    assert bank.budget_s(TARGET_S) == pytest.approx(TARGET_S + 5 * 0.02 / 8)
    for _ in range(50):
        bank.update(decode_obs(iterations_delta=5, mean_iteration_s=0.01), TARGET_S)
    assert bank.budget_s(TARGET_S) == pytest.approx(TARGET_S + 2.0 * TARGET_S / 8)


def test_slow_iterations_drain_the_bank_until_the_budget_is_zero() -> None:
    bank = SlackBank(cap_tokens=2.0, decay=1.0, spend_tokens=8)
    for _ in range(20):
        bank.update(decode_obs(iterations_delta=5, mean_iteration_s=0.2), TARGET_S)
    assert bank.budget_s(TARGET_S) == pytest.approx(0.0)


def test_banked_slack_decays_and_is_dropped_when_the_instance_idles() -> None:
    bank = SlackBank(cap_tokens=2.0, decay=0.5, spend_tokens=8)
    bank.update(decode_obs(iterations_delta=1, mean_iteration_s=0.05), TARGET_S)
    bank.update(decode_obs(iterations_delta=1, mean_iteration_s=TARGET_S), TARGET_S)
    assert bank.banked_s == pytest.approx(0.04 * 0.5)
    bank.update(decode_obs(batch_size=0, context_tokens=0), TARGET_S)
    assert bank.banked_s == 0.0


def test_observations_without_iteration_timing_leave_the_bank_alone() -> None:
    bank = SlackBank(cap_tokens=2.0, decay=1.0, spend_tokens=8)
    bank.update(decode_obs(iterations_delta=3), TARGET_S)
    assert bank.banked_s == 0.0
