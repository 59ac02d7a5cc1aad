"""Long replay windows: the hour of a shipped trace and a compressed day."""

from __future__ import annotations

import itertools

import pytest

from joulescale.twin.long_windows import compressed_day, daily_factor, hour_window
from joulescale.twin.traces import load_trace, synthetic_trace


def test_the_hour_replays_the_whole_shipped_trace_in_order_then_tiles() -> None:
    trace = load_trace("azure-conv")
    hour = hour_window(trace)
    assert hour[-1].arrival_s < 3600.0
    first = hour[:len(trace.requests)]
    assert [(r.arrival_s, r.prompt_tokens) for r in first] == [(r.arrival_s, r.prompt_tokens) for r in trace.requests]
    assert len(hour) > len(trace.requests)  # 58 min of trace: the rest of the hour is its beginning again


def test_the_daily_envelope_has_mean_one_and_the_asked_swing() -> None:
    factors = [daily_factor(h / 10.0, 3.0) for h in range(240)]
    assert sum(factors) / len(factors) == pytest.approx(1.0)
    assert max(factors) / min(factors) == pytest.approx(3.0)
    assert daily_factor(15.0, 3.0) == max(factors)
    with pytest.raises(ValueError, match="swing"):
        daily_factor(0.0, 0.5)


def test_a_compressed_day_keeps_the_mean_rate_and_follows_the_envelope() -> None:
    trace = synthetic_trace(20.0, 4000.0, 512, 64, seed=1)
    day = compressed_day(trace, day_s=2400.0, swing=3.0)
    assert len(day) / 2400.0 == pytest.approx(trace.requests_per_second, rel=0.05)
    per_hour = [0] * 24
    for r in day:
        per_hour[int(r.arrival_s // 100.0)] += 1
    assert per_hour[15] / per_hour[3] == pytest.approx(3.0, rel=0.25)
    assert per_hour.index(max(per_hour)) in range(13, 18)  # Poisson noise near the flat peak
    assert all(b.arrival_s >= a.arrival_s for a, b in itertools.pairwise(day))
