"""``--topology both``: the disaggregated and the aggregated cluster on the same trace and GPUs.

Both topologies replay the same window at the same rate: ``load`` x the lower of their two
static-max capacities, so each runs at most at ``load`` of its own capacity and the energy
figures are for the same work. The verdict, per policy: the topology that uses less energy
while meeting the SLO (both latencies at the percentile within target, every request served);
when only one meets it, that one; when neither does, none. "Revisiting disaggregated LLM
serving" (arXiv 2601.08833) found that disaggregation does not guarantee energy savings, so the
twin measures it instead of assuming it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from joulescale.twin import report
from joulescale.twin.capacity import CapacityCache
from joulescale.twin.cluster import TOPOLOGIES, Topology
from joulescale.twin.compare import Comparison, capacity_of, compare
from joulescale.twin.metrics import meets_slo
from joulescale.twin.settings import CompareSettings

REFERENCE = ("Revisiting disaggregated LLM serving (arXiv 2601.08833): disaggregation does not "
             "guarantee energy savings")


@dataclass(frozen=True, slots=True)
class TopologyComparison:
    settings: CompareSettings
    rate_scale: float
    """The multiple of the trace's rate both topologies replay."""
    comparisons: dict[Topology, Comparison]

    def lower_energy_at_slo(self, policy: str) -> Topology | None:
        """The topology that meets the SLO with less energy under ``policy`` (None: neither meets it)."""
        meeting = [(c.summaries[policy].total_j, topology) for topology, c in self.comparisons.items()
                   if policy in c.summaries and meets_slo(c.summaries[policy], self.settings.slo)]
        return min(meeting)[1] if meeting else None

    @property
    def policies(self) -> list[str]:
        first, *others = self.comparisons.values()
        return [p for p in first.summaries if all(p in c.summaries for c in others)]


def compare_topologies(settings: CompareSettings,
                       clock: Callable[[], float] = time.perf_counter) -> TopologyComparison:
    """Both topologies at one rate: ``--rate`` when given (``native`` or R req/s), else ``load`` x
    the lower static-max capacity. When a topology has no rate that meets the SLO and no ``--rate``
    is given, its ``compare`` raises ``NoFeasibleRateError`` with the reason. An ``auto`` SLO is
    refused by ``CompareSettings`` (each topology would get its own target)."""
    cache = CapacityCache(settings.cache_dir)
    per_topology = {topology: replace(settings, topology=topology) for topology in TOPOLOGIES}
    capacities = {topology: capacity_of(s, cache) for topology, s in per_topology.items()}
    found = [c.rate_scale for c in capacities.values() if c is not None]
    if settings.rate is not None or len(found) < len(capacities):
        rate_scale = None  # each compare takes --rate's scale (the same for both), or says why none meets the SLO
    else:
        rate_scale = min(found) * settings.load
    found_by: dict[Topology, Comparison] = {}
    # One without a capacity first: without --rate it raises NoFeasibleRateError before the other's replays.
    for topology in sorted(per_topology, key=lambda t: capacities[t] is not None):
        comparison = compare(per_topology[topology], clock, rate_scale=rate_scale, cache=cache)
        comparison.capacity = capacities[topology]  # as found (searched or read), not as re-read from memory
        found_by[topology] = comparison
    comparisons = {topology: found_by[topology] for topology in TOPOLOGIES}
    scale = rate_scale if rate_scale is not None else next(iter(comparisons.values())).rate_scale
    return TopologyComparison(settings, scale, comparisons)


def verdict_lines(result: TopologyComparison) -> list[str]:
    """Per policy: each topology's energy and SLO attainment, and the one that wins at the SLO."""
    lines = []
    for policy in result.policies:
        parts = []
        for topology, comparison in result.comparisons.items():
            s = comparison.summaries[policy]
            parts.append(f"{topology} {s.total_j / 1e3:.1f} kJ at {s.slo_attainment * 100:.2f}% SLO attainment"
                         f"{'' if meets_slo(s, result.settings.slo) else ' (misses the SLO)'}")
        winner = result.lower_energy_at_slo(policy)
        ending = (f"{winner} uses less energy at the SLO" if winner is not None
                  else "neither topology meets the SLO")
        lines.append(f"{policy}: {'; '.join(parts)}: {ending}.")
    return lines


def to_json(result: TopologyComparison) -> dict[str, object]:
    return {
        "rate_scale": result.rate_scale,
        "rate_is": ("load x the lower of the topologies' static-max capacities, the same for both"
                    if result.settings.rate is None else f"--rate {result.settings.rate}, the same for both"),
        "topologies": {t: report.to_json(c) for t, c in result.comparisons.items()},
        "verdict": {
            policy: {
                **{t: {"energy_j": c.summaries[policy].total_j, "slo_attainment": c.summaries[policy].slo_attainment,
                       "meets_slo": meets_slo(c.summaries[policy], result.settings.slo)}
                   for t, c in result.comparisons.items()},
                "lower_energy_at_slo": result.lower_energy_at_slo(policy),
            }
            for policy in result.policies
        },
        "reference": REFERENCE,
    }


def text(result: TopologyComparison) -> str:
    blocks = []
    for topology, comparison in result.comparisons.items():
        verdict = report.slo_verdict(comparison)
        blocks.append("\n".join([f"== {topology} ==", report.preamble(comparison), "", report.table(comparison),
                                 *([verdict] if verdict else []), report.conclusion(comparison)]))
    blocks.append("\n".join(["== topologies at the same rate and GPUs ==", *verdict_lines(result),
                             f"(cf. {REFERENCE}.)"]))
    return "\n\n".join(blocks)
