"""What one planner interval observed: the input both the twin and the operator can produce.

The twin builds it from the requests it replayed; the operator from Prometheus counters and
histograms of the engines (request count, prompt- and generation-length histograms). A window
therefore holds the arrival count and length samples, never per-request timestamps, so both
sources give the same thing; a histogram's buckets become samples at their upper bounds.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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

    def __post_init__(self) -> None:
        if not self.end_s > self.start_s:
            raise ValueError(f"a window must end after it starts ({self.start_s} .. {self.end_s})")
        if self.arrivals < 0:
            raise ValueError("arrivals must not be negative")
        if len(self.prompt_tokens) != len(self.output_tokens):
            raise ValueError("prompt_tokens and output_tokens must pair up")
        if any(n < 1 for n in self.prompt_tokens) or any(n < 1 for n in self.output_tokens):
            raise ValueError("token lengths must be positive")

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
        inside = [(p, o) for t, p, o in requests if start_s <= t < end_s]
        kept = subsample(inside, MAX_LENGTH_SAMPLES, seed)
        return cls(start_s, end_s, len(inside), tuple(p for p, _ in kept), tuple(o for _, o in kept))


def subsample(rows: Sequence[tuple[int, int]], limit: int, seed: int) -> list[tuple[int, int]]:
    """At most ``limit`` rows, a seeded uniform sample in their original order."""
    if len(rows) <= limit:
        return list(rows)
    picked = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in picked]
