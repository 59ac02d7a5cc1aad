"""Cumulative Prometheus histograms: the read-only value a page holds and a recorder that grows one."""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Histogram:
    """A cumulative histogram: ``buckets`` maps the upper bound ``le`` to the cumulative count."""

    count: float
    sum: float
    buckets: dict[float, float] = field(default_factory=dict)

    def minus(self, earlier: Histogram) -> Histogram:
        """Increments since ``earlier``; a counter reset (engine restart) yields the later values."""
        if earlier is self:  # an unchanged page (a recorder's cached snapshot): nothing grew
            return Histogram(0.0, 0.0, dict.fromkeys(self.buckets, 0.0))
        if self.count < earlier.count:
            return self
        buckets = {le: c - earlier.buckets.get(le, 0.0) for le, c in self.buckets.items()}
        return Histogram(self.count - earlier.count, self.sum - earlier.sum, buckets)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None


class HistogramRecorder:
    """Grows a cumulative histogram over fixed bucket edges, as an engine's prometheus_client does.

    ``observe`` takes a multiplicity so that a simulated engine can record one value for a whole
    batch (every running request's inter-token latency of one step) in O(log buckets).
    """

    __slots__ = ("_counts", "_edges", "_snapshot", "count", "sum")

    def __init__(self, edges: tuple[float, ...]) -> None:
        if not edges or any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError("bucket edges must be a non-empty increasing sequence")
        self._edges = edges
        self._counts = [0.0] * (len(edges) + 1)  # the last one is the +Inf bucket
        self.count = 0.0
        self.sum = 0.0
        self._snapshot: Histogram | None = None

    def observe(self, value: float, times: int = 1) -> None:
        if times <= 0:
            return
        self._counts[bisect.bisect_left(self._edges, value)] += times
        self.count += times
        self.sum += value * times
        self._snapshot = None

    def snapshot(self) -> Histogram:
        """The histogram now; the same object until the next observation (scrapes outnumber
        the changes of a rarely observed histogram, and an unchanged one is cheap to diff)."""
        if self._snapshot is not None:
            return self._snapshot
        buckets: dict[float, float] = {}
        running = 0.0
        for le, n in zip((*self._edges, math.inf), self._counts, strict=True):
            running += n
            buckets[le] = running
        self._snapshot = Histogram(self.count, self.sum, buckets)
        return self._snapshot
