"""Tell the user when an SLO target falls between two bucket edges of the engine's histogram
(pure): its attainment is then interpolated (``joulescale.engines.bucket_estimates``), and the
sentence says how coarse the engine's buckets are there."""

from __future__ import annotations

from joulescale.api import EnergyAwareLLMServiceSpec
from joulescale.engines import bucket_estimates
from joulescale.engines.dialects import dialect_for


def between_buckets_note(spec: EnergyAwareLLMServiceSpec) -> str | None:
    """One sentence for the targets that are no edge of the engine's TTFT or inter-token
    buckets; None when every target is an edge (or the engine is unknown)."""
    try:
        dialect = dialect_for(spec.engine.name)
    except ValueError:
        return None
    parts = []
    for label, target_ms, edges in (
        ("TTFT", spec.slo.ttft_ms, dialect.ttft_edges_s),
        ("TPOT", spec.slo.tpot_ms, dialect.itl_edges_s),
    ):
        around = bucket_estimates.edges_around(edges, target_ms / 1000.0)
        if around is None:
            continue
        below, above = around
        if above is None:
            parts.append(f"{label} target {target_ms:g} ms lies above {dialect.name}'s last bucket edge "
                         f"({_ms(below)} ms): only the share up to that edge is counted within it")
        else:
            parts.append(f"{label} target {target_ms:g} ms lies between {dialect.name}'s {_ms(below)} and "
                         f"{_ms(above)} ms buckets: attainment interpolated")
    if not parts:
        return None
    return ("; ".join(parts) + " (an SLO counts as at risk only when the buckets show the percentile over "
            "its target; a target on a bucket edge is counted exactly).")


def _ms(edge_s: float | None) -> str:
    return "0" if edge_s is None else f"{edge_s * 1000:g}"
