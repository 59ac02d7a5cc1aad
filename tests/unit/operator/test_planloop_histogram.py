"""WindowHistogram follows histogram_quantile's and histogram_fraction's rules (the rule itself:
tests/unit/engines/test_bucket_estimates.py)."""

from __future__ import annotations

import pytest

from joulescale_operator.planloop.histogram import WindowHistogram


def vector(*buckets: tuple[str, float]) -> list[tuple[dict[str, str], float]]:
    return [({"le": le}, count) for le, count in buckets]


HIST = vector(("0.1", 50.0), ("0.5", 90.0), ("1.0", 99.0), ("+Inf", 100.0))


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    histogram = WindowHistogram.of(HIST)
    assert histogram is not None
    assert histogram.quantile(0.5) == pytest.approx(0.1)
    assert histogram.quantile(0.7) == pytest.approx(0.1 + 0.4 * (70 - 50) / 40)
    assert histogram.quantile(0.995) == pytest.approx(1.0)  # rank in +Inf: the highest finite bound


def test_fraction_within_interpolates_inside_the_bucket_that_holds_the_limit() -> None:
    histogram = WindowHistogram.of(HIST)
    assert histogram is not None
    assert histogram.fraction_within(0.5) == pytest.approx(0.9)
    assert histogram.fraction_within(0.7) == pytest.approx(0.9 + 0.09 * 0.4)  # 0.2 of the 0.5-1.0 bucket's 0.5
    assert histogram.fraction_within(0.05) == pytest.approx(0.25)
    assert not histogram.at_risk(0.9, 0.7)  # up to 99 % may lie within 0.7
    assert histogram.at_risk(0.95, 0.5)


def test_no_observations_or_no_inf_bucket_means_no_answer() -> None:
    empty = WindowHistogram.of(vector(("0.1", 0.0), ("+Inf", 0.0)))
    assert empty is not None
    assert empty.quantile(0.99) is None
    assert empty.fraction_within(1.0) is None
    assert WindowHistogram.of(vector(("0.1", 3.0))) is None
    assert WindowHistogram.of([]) is None


def test_samples_follow_the_bucket_shares() -> None:
    histogram = WindowHistogram.of(vector(("128", 25.0), ("1024", 75.0), ("+Inf", 100.0)))
    assert histogram is not None
    samples = histogram.samples(8)
    assert sorted(samples) == [128, 128, 1024, 1024, 1024, 1024, 1024, 1024]


@pytest.mark.parametrize("buckets", [
    vector(("0.01", float("nan")), ("0.025", 5.0), ("+Inf", 10.0)),
    vector(("0.01", 10.0), ("0.025", 5.0), ("+Inf", 3.0)),  # decreasing: a cumulative count never does
    vector(("0.01", float("inf")), ("0.025", 5.0), ("+Inf", 10.0)),
    vector(("0.01", -5.0), ("0.025", 2.0), ("+Inf", 10.0)),
    vector(("0.025", 5.0), ("0.01", 1.0), ("bogus", 7.0), ("+Inf", 10.0)),
])
def test_a_hostile_histogram_gives_shares_within_0_and_1_and_quantiles_within_its_bounds(
    buckets: list[tuple[dict[str, str], float]],
) -> None:
    """An engine's page (or a sum over series scraped at different instants) decides the counts:
    none of them may make a share over 1, a NaN in the status, or a crash in the lengths."""
    histogram = WindowHistogram.of(buckets)
    assert histogram is not None
    share = histogram.fraction_within(0.02)
    assert share is not None
    assert 0.0 <= share <= 1.0
    value = histogram.quantile(0.99)
    assert value is not None
    assert 0.0 <= value <= 0.025
    assert all(isinstance(v, int) and v >= 1 for v in histogram.samples(50))
