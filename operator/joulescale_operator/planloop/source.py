"""Where the planner loop reads metrics: a seam (Prometheus in production, prometheus.py)."""

from __future__ import annotations

from typing import Protocol

Sample = tuple[dict[str, str], float]
"""One element of an instant vector: its labels and its value."""


class MetricsUnavailable(Exception):
    """The metrics source cannot answer (unreachable, erroring, timing out)."""


class MetricsSource(Protocol):
    def vector(self, expr: str, at_s: float) -> list[Sample]:
        """The instant vector of ``expr`` evaluated at ``at_s`` (Unix seconds); MetricsUnavailable
        when the source cannot answer. An empty list is an answer: no such series."""
        ...
