"""The one rule for SLO attainment from an engine's buckets: interpolated inside the bucket that
holds the target, as PromQL's histogram_fraction, and "at risk" only when the buckets show it."""

from __future__ import annotations

import math
import random

import pytest

from joulescale.engines.bucket_estimates import at_risk, edges_around, quantile, share_bounds, share_within
from joulescale.engines.dialects import VLLM_ITL_EDGES_S
from joulescale.engines.histogram import HistogramRecorder

INF = math.inf
# Per bucket: 2 up to 15 ms, 8 in (15, 25], 4 in (25, 50], 6 beyond (the numbers the promtool test uses).
BUCKETS = ((0.015, 2.0), (0.025, 10.0), (0.05, 14.0), (INF, 20.0))


def test_a_target_between_edges_is_interpolated_inside_its_bucket() -> None:
    assert share_within(BUCKETS, 0.02) == pytest.approx((2 + 8 * 0.5) / 20)
    assert share_within(BUCKETS, 0.0175) == pytest.approx((2 + 8 * 0.25) / 20)
    assert share_bounds(BUCKETS, 0.02) == (pytest.approx(2 / 20), pytest.approx(10 / 20))


def test_a_target_on_an_edge_counts_that_bucket_exactly() -> None:
    assert share_within(BUCKETS, 0.025) == pytest.approx(0.5)
    assert share_bounds(BUCKETS, 0.025) == (pytest.approx(0.5), pytest.approx(0.5))
    assert edges_around(VLLM_ITL_EDGES_S, 0.025) is None
    assert edges_around(VLLM_ITL_EDGES_S, 0.02) == (0.01, 0.025)


def test_a_target_below_the_first_edge_interpolates_from_zero() -> None:
    assert share_within(BUCKETS, 0.005) == pytest.approx(2 / 20 * 0.005 / 0.015)
    assert share_within(BUCKETS, 0.0) == 0.0
    assert share_bounds(BUCKETS, 0.005) == (0.0, pytest.approx(0.1))
    assert edges_around(VLLM_ITL_EDGES_S, 0.005) == (None, 0.01)


def test_a_target_above_the_last_edge_counts_the_inf_bucket_as_over() -> None:
    assert share_within(BUCKETS, 1.0) == pytest.approx(14 / 20)
    assert share_bounds(BUCKETS, 1.0) == (pytest.approx(14 / 20), 1.0)  # +Inf may lie either side
    assert not at_risk(BUCKETS, 0.9, 1.0)  # the buckets cannot show that miss
    assert edges_around(VLLM_ITL_EDGES_S, 100.0) == (80.0, None)


def test_an_empty_histogram_has_no_estimate_and_no_risk() -> None:
    empty = ((0.015, 0.0), (INF, 0.0))
    assert share_within(empty, 0.02) is None
    assert share_bounds(empty, 0.02) is None
    assert quantile(empty, 0.99) is None
    assert not at_risk(empty, 0.99, 0.02)
    assert share_within((), 0.02) is None
    assert share_within(((0.015, 3.0),), 0.02) is None  # no +Inf bucket: no histogram


def test_quantile_is_histogram_quantile() -> None:
    assert quantile(BUCKETS, 0.3) == pytest.approx(0.015 + 0.01 * (6 - 2) / 8)
    assert quantile(BUCKETS, 0.05) == pytest.approx(0.015 * 1 / 2)
    assert quantile(BUCKETS, 0.99) == 0.05  # rank in +Inf: the highest finite bound


def test_at_risk_needs_the_percentiles_bucket_wholly_above_the_target() -> None:
    assert not at_risk(BUCKETS, 0.5, 0.02)  # p50 may lie under 20 ms: up to 10 of 20 can
    assert at_risk(BUCKETS, 0.51, 0.02)
    assert at_risk(BUCKETS, 0.9, 0.025)  # on an edge: exactly 50 % within, under 90 %
    assert not at_risk(BUCKETS, 0.5, 0.025)


def _vllm_itl(mean_s: float, spread_s: float, n: int = 20_000) -> tuple[tuple[float, float], ...]:
    rng = random.Random(16)
    recorder = HistogramRecorder(VLLM_ITL_EDGES_S)
    for _ in range(n):
        recorder.observe(max(0.001, rng.gauss(mean_s, spread_s)))
    return tuple(sorted(recorder.snapshot().buckets.items()))


def test_vllm_token_gaps_of_12_ms_meet_a_20_ms_target_and_30_ms_gaps_miss_it() -> None:
    """The defect: vLLM's edges are 10 and 25 ms around 20 ms, so counting only whole buckets under
    the target gave ~0 % for 12 ms gaps. Interpolated, the share is most of the bucket; no risk is
    claimed the buckets cannot show, and a real miss still is one."""
    fast = _vllm_itl(0.012, 0.0015)
    assert share_within(fast, 0.02) == pytest.approx(fast[0][1] / 20_000 + (1 - fast[0][1] / 20_000) * 10 / 15)
    assert share_within(fast, 0.02) > 0.6
    assert not at_risk(fast, 0.99, 0.02)
    slow = _vllm_itl(0.030, 0.002)
    assert share_within(slow, 0.02) < 0.01
    assert at_risk(slow, 0.99, 0.02)
