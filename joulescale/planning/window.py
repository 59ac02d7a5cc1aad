"""What one planner interval observed: the input both the twin and the operator can produce.

The twin builds it from the requests it replayed; the operator from Prometheus counters and
histograms of the engines (request count, prompt- and generation-length histograms). A window
therefore holds the arrival count and length samples, never per-request timestamps, so both
sources give the same thing; a histogram's buckets become samples at their upper bounds. It may
also hold the arrivals per ``SUB_WINDOW_S`` sub-window (the request counter's increase per
minute, which Prometheus keeps): the burst rates a P99 latency is made of.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SUB_WINDOW_S = 60.0
"""Sub-window of the burst rates: long enough that its arrivals' own Poisson scatter is what the
candidate tables already assume, short enough to see a burst that builds a queue within an
interval (a minute, a few Prometheus scrapes)."""
MAX_LENGTH_SAMPLES = 4096
"""A window keeps at most this many (prompt, output) samples (a seeded uniform subsample):
enough for the P99 of a length mix, small enough to hash and cache every interval."""


@dataclass(frozen=True, slots=True)
class TrafficWindow:
    start_s: float
    end_s: float
    arrivals: int
    """Requests that arrived in [start_s, end_s)."""
    prompt_tokens: tuple[int, ...]
    """Prompt lengths of (a sample of) those requests, paired with ``output_tokens``."""
    output_tokens: tuple[int, ...]
    """Output lengths, the first token included (as ``TraceRequest.output_tokens``)."""
    sub_arrivals: tuple[int, ...] = ()
    """Arrivals per consecutive ``sub_window_s`` from ``start_s`` (empty: not known, the window
    counts as one sub-window; the last one may be shorter)."""
    sub_window_s: float = SUB_WINDOW_S

    def __post_init__(self) -> None:
        if not self.end_s > self.start_s:
            raise ValueError(f"a window must end after it starts ({self.start_s} .. {self.end_s})")
        if self.arrivals < 0:
            raise ValueError("arrivals must not be negative")
        if len(self.prompt_tokens) != len(self.output_tokens):
            raise ValueError("prompt_tokens and output_tokens must pair up")
        if any(n < 1 for n in self.prompt_tokens) or any(n < 1 for n in self.output_tokens):
            raise ValueError("token lengths must be positive")
        if self.sub_arrivals and (sum(self.sub_arrivals) != self.arrivals or min(self.sub_arrivals) < 0
                                  or self.sub_window_s <= 0):
            raise ValueError("sub-window arrivals must be non-negative and add up to the window's arrivals")

    def sub_rates(self) -> list[tuple[float, int]]:
        """(rate, arrivals) per sub-window; the whole window when sub-windows are not known."""
        if not self.sub_arrivals:
            return [(self.rate_rps, self.arrivals)]
        out = []
        for i, count in enumerate(self.sub_arrivals):
            span = min(self.sub_window_s, self.end_s - self.start_s - i * self.sub_window_s)
            out.append((count / span if span > 0 else 0.0, count))
        return out

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def rate_rps(self) -> float:
        return self.arrivals / self.duration_s

    @classmethod
    def from_requests(cls, start_s: float, end_s: float, requests: Iterable[tuple[float, int, int]],
                      seed: int = 0) -> TrafficWindow:
        """A window from (arrival_s, prompt_tokens, output_tokens) rows; rows outside it are ignored."""
        rows = [(t, p, o) for t, p, o in requests if start_s <= t < end_s]
        kept = subsample([(p, o) for _, p, o in rows], MAX_LENGTH_SAMPLES, seed)
        return cls(start_s, end_s, len(rows), tuple(p for p, _ in kept), tuple(o for _, o in kept),
                   sub_window_counts([t for t, _, _ in rows], start_s, end_s))


def sub_window_counts(arrivals_s: Iterable[float], start_s: float, end_s: float,
                      sub_window_s: float = SUB_WINDOW_S) -> tuple[int, ...]:
    """Arrivals in ``[start_s, end_s]`` per consecutive ``sub_window_s`` from ``start_s`` (the last
    one may be shorter and holds an arrival at ``end_s``)."""
    counts = [0] * max(1, math.ceil((end_s - start_s) / sub_window_s - 1e-9))
    for t in arrivals_s:
        if start_s <= t <= end_s:
            counts[min(len(counts) - 1, int((t - start_s) // sub_window_s))] += 1
    return tuple(counts)


def subsample(rows: Sequence[tuple[int, int]], limit: int, seed: int) -> list[tuple[int, int]]:
    """At most ``limit`` rows, a seeded uniform sample in their original order."""
    if len(rows) <= limit:
        return list(rows)
    picked = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in picked]
