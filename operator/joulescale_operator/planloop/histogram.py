"""A Prometheus histogram's increase over a window, as ``sum by (le)`` returns it (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from joulescale.engines import bucket_estimates
from joulescale_operator.planloop.source import Sample


@dataclass(frozen=True, slots=True)
class WindowHistogram:
    buckets: tuple[tuple[float, float], ...]
    """(upper bound, cumulative count), ascending, the +Inf bucket last."""

    @classmethod
    def of(cls, samples: list[Sample]) -> WindowHistogram | None:
        """From a ``sum by (le)`` vector; None when it has no +Inf bucket (no histogram there)."""
        buckets = bucket_estimates.normalised([(_bound(labels.get("le", "")), value) for labels, value in samples])
        if not buckets or not math.isinf(buckets[-1][0]):
            return None
        return cls(buckets)

    @property
    def count(self) -> float:
        return self.buckets[-1][1]

    def quantile(self, q: float) -> float | None:
        """histogram_quantile's value (``joulescale.engines.bucket_estimates``)."""
        return bucket_estimates.quantile(self.buckets, q)

    def fraction_within(self, limit: float) -> float | None:
        """The share of observations at most ``limit``, interpolated inside the bucket holding it
        (histogram_fraction's rule). None without observations."""
        return bucket_estimates.share_within(self.buckets, limit)

    def at_risk(self, percentile: float, limit: float) -> bool:
        """The buckets show the ``percentile`` (in [0, 1]) over ``limit``."""
        return bucket_estimates.at_risk(self.buckets, percentile, limit)

    def samples(self, limit: int) -> list[int]:
        """About ``limit`` values spread like the observations, each at its bucket's upper bound
        (the +Inf bucket at the highest finite bound): lengths for a TrafficWindow."""
        total = self.count
        if total <= 0 or limit <= 0:
            return []
        finite = [le for le, _ in self.buckets if not math.isinf(le)]
        ceiling = finite[-1] if finite else 1.0
        values: list[int] = []
        previous = 0.0
        for le, cumulative in self.buckets:
            share = (cumulative - previous) / total
            previous = cumulative
            value = max(1, round(ceiling if math.isinf(le) else le))
            values += [value] * round(share * limit)
        return values


def _bound(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
