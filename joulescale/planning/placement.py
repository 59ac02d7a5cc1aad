"""A placement: how many instances of which candidate run each phase."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from joulescale.engines.observation import Phase
from joulescale.planning.candidates import Candidate, CandidateTable


@dataclass(frozen=True, slots=True, order=True)
class Allocation:
    candidate: Candidate
    replicas: int

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError("replicas must not be negative")


@dataclass(frozen=True, slots=True)
class Placement:
    allocations: tuple[Allocation, ...] = ()
    """Sorted, one entry per candidate, no zero counts (``of`` normalises)."""

    @classmethod
    def of(cls, allocations: Iterable[Allocation]) -> Placement:
        counts: dict[Candidate, int] = {}
        for allocation in allocations:
            counts[allocation.candidate] = counts.get(allocation.candidate, 0) + allocation.replicas
        return cls(tuple(sorted(Allocation(c, n) for c, n in counts.items() if n > 0)))

    def role(self, phase: Phase) -> tuple[Allocation, ...]:
        return tuple(a for a in self.allocations if a.candidate.phase == phase)

    def shape(self, phase: Phase) -> frozenset[str]:
        """The role's profiles (TP degrees): what a change restarts replicas for."""
        return frozenset(a.candidate.profile for a in self.role(phase))

    @property
    def layout(self) -> tuple[tuple[Phase, str, int], ...]:
        """Replicas per (role, profile), base clocks left out: what a change starts or stops
        replicas for (a base clock changes on running replicas)."""
        counts: dict[tuple[Phase, str], int] = {}
        for a in self.allocations:
            key = (a.candidate.phase, a.candidate.profile)
            counts[key] = counts.get(key, 0) + a.replicas
        return tuple(sorted((phase, profile, n) for (phase, profile), n in counts.items()))

    def replicas(self, phase: Phase) -> int:
        return sum(a.replicas for a in self.role(phase))

    @property
    def gpus(self) -> int:
        return sum(a.replicas * a.candidate.gpus for a in self.allocations)

    def gpus_by_product(self) -> dict[str, int]:
        used: dict[str, int] = {}
        for a in self.allocations:
            used[a.candidate.gpu_product] = used.get(a.candidate.gpu_product, 0) + a.replicas * a.candidate.gpus
        return used

    def capacity_rps(self, phase: Phase, tables: Mapping[Candidate, CandidateTable]) -> float:
        """The phase's capacity; a candidate without a table counts as none (the planner then acts)."""
        return sum(a.replicas * tables[a.candidate].capacity_rps for a in self.role(phase) if a.candidate in tables)

    def power_watts(self, rate_rps: float, tables: Mapping[Candidate, CandidateTable]) -> float:
        """Mean power at ``rate_rps``, each phase's load shared in proportion to capacity."""
        total = 0.0
        for phase in ("prefill", "decode"):
            capacity = self.capacity_rps(phase, tables)
            for a in self.role(phase):
                table = tables.get(a.candidate)
                if table is None:
                    continue
                share = a.replicas * table.capacity_rps / capacity if capacity > 0 else 0.0
                total += a.replicas * table.base_watts + table.joules_per_request * rate_rps * share
        return total

    def describe(self) -> str:
        if not self.allocations:
            return "(nothing)"
        return ", ".join(f"{a.replicas} x {a.candidate.label}" for a in self.allocations)
