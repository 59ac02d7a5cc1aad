"""The re-lock back-off: base after a first release, doubling while releases keep coming,
capped, back to the base after a quiet spell."""

from __future__ import annotations

from joulescale_agent.control.backoff import RelockBackoff


def test_no_back_off_before_any_release() -> None:
    assert not RelockBackoff(1.0, 30.0).holds(0.0)


def test_a_release_holds_locks_for_the_base_back_off() -> None:
    backoff = RelockBackoff(1.0, 30.0)
    assert backoff.released(10.0) == 1.0
    assert backoff.holds(10.99)
    assert not backoff.holds(11.0)


def test_releases_that_keep_coming_double_the_back_off_up_to_the_maximum() -> None:
    backoff, now_s = RelockBackoff(1.0, 5.0), 0.0
    seen = []
    for _ in range(5):
        seen.append(backoff.released(now_s))
        now_s += seen[-1] + 0.5  # released again soon after each back-off ends
    assert seen == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_quiet_spell_longer_than_the_maximum_resets_the_back_off() -> None:
    backoff = RelockBackoff(1.0, 5.0)
    backoff.released(0.0)
    backoff.released(1.5)
    assert backoff.released(1.5 + 2.0 + 5.0) == 1.0
