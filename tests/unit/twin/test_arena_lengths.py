"""The lmarena-chat length mix follows its published sources (joulescale/twin/arena_lengths.py)."""

from __future__ import annotations

import statistics

import pytest

from joulescale.twin import arena_lengths


def test_one_request_per_published_answer_with_the_published_mean_length() -> None:
    mix = arena_lengths.lengths()
    assert len(mix) == sum(arena_lengths.OUTPUT_BIN_COUNTS) == 1024
    # ML.ENERGY's run averaged 358.9 output tokens; bin middles stand for each bin (81.9 tokens wide)
    assert statistics.fmean(o for _, o in mix) == pytest.approx(358.9, rel=0.02)
    assert all(2 <= o <= 4096 for _, o in mix)


def test_prompts_are_first_turns_and_second_turns_carrying_the_first_exchange() -> None:
    prompts = [p for p, _ in arena_lengths.lengths()]
    first, second = arena_lengths.PROMPT_TOKENS, 2 * arena_lengths.PROMPT_TOKENS + arena_lengths.ANSWER_TOKENS
    assert set(prompts) == {first, second}
    assert prompts.count(first) == prompts.count(second)
    assert statistics.fmean(prompts) == pytest.approx((70 + 355) / 2)


def test_the_order_is_the_same_on_every_call() -> None:
    assert arena_lengths.lengths() == arena_lengths.lengths()
    assert [o for _, o in arena_lengths.lengths()] != sorted(o for _, o in arena_lengths.lengths())
