"""The clock-over-time panels bin a step trace: a time-weighted mean and the range held per bin."""

from __future__ import annotations

import pytest

from joulescale.twin.plots import binned_clock


def test_a_bin_holds_the_time_weighted_mean_and_the_range_of_its_clocks() -> None:
    # 1980 MHz for 0.25 s, 990 for 0.5 s, 1980 again from 0.75 s; then 345 from 1.5 s on.
    trace = [(0.0, 1980), (0.25, 990), (0.75, 1980), (1.5, 345)]
    centres, means, lows, highs = binned_clock(trace, 2.0, 2)
    assert centres == [0.5, 1.5]
    assert means[0] == pytest.approx(0.25 * 1980 + 0.5 * 990 + 0.25 * 1980)
    assert (lows[0], highs[0]) == (990, 1980)
    assert means[1] == pytest.approx(0.5 * 1980 + 0.5 * 345)  # the clock held from 0.75 s, then 345
    assert (lows[1], highs[1]) == (345, 1980)


def test_many_changes_inside_one_bin_and_bins_after_the_last_change() -> None:
    trace = [(0.0, 1000)] + [(0.01 * i, 1000 if i % 2 == 0 else 2000) for i in range(1, 100)]
    _, means, lows, highs = binned_clock(trace, 3.0, 3)
    assert means[0] == pytest.approx(1500, rel=0.01)
    assert (lows[0], highs[0]) == (1000, 2000)
    assert means[1:] == [2000, 2000]  # the last change (to 2000 at 0.99 s) holds to the end
    assert lows[2] == highs[2] == 2000
