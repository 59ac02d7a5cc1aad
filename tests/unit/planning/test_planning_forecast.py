"""Forecasters: last-window follows the last window; ewma-upper keeps a burst's capacity for a while."""

from __future__ import annotations

import pytest

from joulescale.planning.forecast import EwmaUpper, LastWindow, LengthMix, forecast_errors, make_forecaster
from joulescale.planning.window import TrafficWindow


def window(index: int, rate: float, prompt: int = 1000, output: int = 200, length_s: float = 300.0) -> TrafficWindow:
    count = round(rate * length_s)
    return TrafficWindow(index * length_s, (index + 1) * length_s, count, (prompt,) * min(count, 50),
                         (output,) * min(count, 50))


def test_last_window_forecasts_the_last_rate_and_mix() -> None:
    forecaster = LastWindow()
    assert forecaster.forecast() is None
    forecaster.observe(window(0, 4.0, prompt=500))
    forecaster.observe(window(1, 2.0, prompt=2000))
    forecast = forecaster.forecast()
    assert forecast is not None
    assert forecast.rate_rps == pytest.approx(2.0)
    assert forecast.mix.mean_prompt_tokens == pytest.approx(2000, rel=0.05)


def test_ewma_upper_holds_after_a_burst_and_follows_a_sustained_fall() -> None:
    forecaster = EwmaUpper()
    for i, rate in enumerate((2.0, 2.0, 8.0, 2.0)):
        forecaster.observe(window(i, rate))
    after_burst = forecaster.forecast()
    assert after_burst is not None
    assert after_burst.rate_rps > 4.0
    for i in range(4, 10):
        forecaster.observe(window(i, 1.0))
    settled = forecaster.forecast()
    assert settled is not None
    assert settled.rate_rps == pytest.approx(1.0, rel=0.05)


def test_length_mix_buckets_small_drifts_together_and_separates_large_ones() -> None:
    # 956, 2048 and 405 are grid points (powers of 1.1): a drift of 3 % stays within their buckets.
    base = LengthMix.of([956, 2048, 405] * 30, [97, 318] * 45)
    assert LengthMix.of([985, 2000, 417] * 30, [99, 310] * 45).key() == base.key()
    assert LengthMix.of([1240, 2660, 520] * 30, [97, 318] * 45).key() != base.key()


def test_window_refuses_unpaired_lengths_and_an_empty_span() -> None:
    with pytest.raises(ValueError, match="pair"):
        TrafficWindow(0.0, 1.0, 2, (1, 2), (1,))
    with pytest.raises(ValueError, match="end after"):
        TrafficWindow(1.0, 1.0, 0, (), ())


def test_window_from_requests_counts_only_its_span() -> None:
    rows = [(t * 0.5, 100 + t, 10) for t in range(100)]
    built = TrafficWindow.from_requests(10.0, 20.0, rows)
    assert built.arrivals == 20
    assert built.rate_rps == pytest.approx(2.0)
    assert min(built.prompt_tokens) == 120


def test_on_bursty_windows_ewma_upper_misses_fewer_bursts_than_last_window() -> None:
    rates = [2.0, 2.2, 6.0, 2.1, 5.5, 2.0, 2.3, 6.5, 2.2, 2.0, 5.8, 2.1]
    windows = [window(i, r) for i, r in enumerate(rates)]
    last = forecast_errors("last-window", windows)
    ewma = forecast_errors("ewma-upper", windows)
    assert ewma.under_share < last.under_share
    assert ewma.worst_under_pct < last.worst_under_pct


def test_unknown_forecaster_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="ewma-upper"):
        make_forecaster("prophet")
