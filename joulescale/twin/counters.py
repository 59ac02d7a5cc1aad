"""What an engine's /metrics page exposes, as cumulative counters plus a scrape snapshot."""

from __future__ import annotations

from dataclasses import dataclass


class EngineCounters:
    """Cumulative counters an engine exports (Prometheus counters only ever grow)."""

    __slots__ = (
        "busy_s",
        "generation_tokens",
        "iterations",
        "last_iteration_s",
        "max_queue_wait_s",
        "preemptions",
        "prompt_tokens",
    )

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.iterations = 0
        self.preemptions = 0
        self.busy_s = 0.0
        self.last_iteration_s: float | None = None
        self.max_queue_wait_s = 0.0
        """Longest queue time of requests scheduled since the last scrape (a histogram's top bucket)."""

    def note_iteration(self, duration_s: float) -> None:
        self.iterations += 1
        self.busy_s += duration_s
        self.last_iteration_s = duration_s


@dataclass(frozen=True, slots=True)
class Scrape:
    """One /metrics scrape of an instance at ``at_s``."""

    at_s: float
    running_requests: int
    waiting_requests: int
    kv_cache_usage: float
    prompt_tokens: int
    generation_tokens: int
    iterations: int
    preemptions: int
    busy_s: float
    last_iteration_s: float | None
    queue_wait_s: float | None
    """Upper edge of the highest queue-time histogram bucket that grew since the last scrape."""


QUEUE_TIME_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 20.0,
                                           40.0, 80.0)
"""Bucket edges of the queue-time histogram the simulated engine exports."""


def bucket_upper_edge_s(value_s: float) -> float:
    for edge in QUEUE_TIME_BUCKETS_S:
        if value_s <= edge:
            return edge
    return float("inf")
