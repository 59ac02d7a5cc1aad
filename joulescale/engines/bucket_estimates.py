"""What an engine's cumulative histogram says about a latency target: the one rule for SLO
attainment and "at risk" from buckets (the operator's status and planner, the chart's PromQL).

An engine publishes counts per fixed bucket (``le`` edges, ``joulescale.engines.dialects``), so
a target that falls between two edges splits a bucket whose observations could lie on either
side of it. The estimate assumes them spread evenly within the bucket, as PromQL's
``histogram_quantile`` and ``histogram_fraction`` do (the first bucket starts at 0; what lies in
the +Inf bucket is over every finite target), so the operator's numbers and the dashboard's agree.

The share within the target is known only between two bounds: the bucket edges around it. An
SLO is *at risk* only when the buckets show a miss: when even the upper bound of the share is
under the percentile, i.e. the percentile's bucket lies wholly above the target. Inside the
bucket that holds the target the histogram cannot tell (with vLLM's 10 and 25 ms edges, 12 ms
token gaps against a 20 ms target interpolate to a 99th percentile of 24.9 ms), and the
planner's own capacity model decides there.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

Buckets = Sequence[tuple[float, float]]
"""(upper bound ``le``, cumulative count), ascending by bound, the +Inf bucket last."""


def normalised(pairs: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Buckets the rules below can trust, from (bound, cumulative count) pairs an engine or a
    query returned: bounds that are not numbers and counts that are not finite dropped, sorted
    by bound, negative counts as 0, and each count at least the one below it (a cumulative
    histogram never decreases; an engine that says otherwise, or a sum over series scraped at
    different instants, must not make a share over 1 or a quantile out of its bucket)."""
    finite = sorted((le, count) for le, count in pairs if not math.isnan(le) and math.isfinite(count))
    buckets: list[tuple[float, float]] = []
    running = 0.0
    for le, count in finite:
        running = max(running, count)
        buckets.append((le, running))
    return tuple(buckets)


def share_within(buckets: Buckets, limit: float) -> float | None:
    """The estimated share of observations at most ``limit``: linear inside the bucket that holds
    it (``histogram_fraction(0, limit, ...)``). None without observations."""
    total = _total(buckets)
    if total is None:
        return None
    lower_bound, lower_count = 0.0, 0.0
    for le, cumulative in buckets:
        if math.isinf(le):
            break
        if limit == le:
            return min(1.0, cumulative / total)
        if limit < le:
            if limit <= lower_bound:
                return lower_count / total
            share = (limit - lower_bound) / (le - lower_bound)
            return (lower_count + (cumulative - lower_count) * share) / total
        lower_bound, lower_count = le, cumulative
    return min(1.0, lower_count / total)


def share_bounds(buckets: Buckets, limit: float) -> tuple[float, float] | None:
    """The least and the most the share within ``limit`` can be: the counts at the edges below
    and above it (equal when ``limit`` is an edge). None without observations."""
    total = _total(buckets)
    if total is None:
        return None
    below = max((count for le, count in buckets if le <= limit), default=0.0)
    above = min((count for le, count in buckets if le >= limit and not math.isinf(le)), default=None)
    # Beyond the last finite edge the +Inf bucket's observations may lie on either side of it.
    upper = total if above is None else above
    return min(1.0, below / total), min(1.0, upper / total)


def quantile(buckets: Buckets, q: float) -> float | None:
    """``histogram_quantile``'s value: linear inside the bucket holding rank q x count; the
    highest finite bound when the rank falls in +Inf. None without observations."""
    total = _total(buckets)
    if total is None:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(le):
                return lower_bound
            width = cumulative - lower_count
            share = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (le - lower_bound) * share
        lower_bound, lower_count = le, cumulative
    return lower_bound


def at_risk(buckets: Buckets, percentile: float, limit: float) -> bool:
    """The SLO percentile (in [0, 1]) is shown over ``limit``: even the most the share within it
    can be is under the percentile. False without observations (no evidence of a miss)."""
    bounds = share_bounds(buckets, limit)
    return bounds is not None and bounds[1] < percentile


def edges_around(edges: Sequence[float], limit: float) -> tuple[float | None, float | None] | None:
    """The engine's bucket edges just below and above a ``limit`` that is not one of them (None
    for no edge on that side); None when ``limit`` is an edge (its share is counted exactly)."""
    index = bisect.bisect_left(edges, limit)
    if index < len(edges) and math.isclose(edges[index], limit, rel_tol=1e-9, abs_tol=0.0):
        return None
    below = edges[index - 1] if index > 0 else None
    above = edges[index] if index < len(edges) else None
    return below, above


def _total(buckets: Buckets) -> float | None:
    if not buckets or not math.isinf(buckets[-1][0]) or buckets[-1][1] <= 0:
        return None
    return buckets[-1][1]
