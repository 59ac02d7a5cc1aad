"""``joulescale plan``'s engine: the least-power placement for a trace's traffic at each cluster size.

The trace gives one length mix (all its requests) and its own mean rate; the twin's candidate
tables (``candidate_tables``) and the planner's program (``joulescale.planning.program``) give,
for each GPU budget, the placement that meets the SLO at that rate with the planner's margin at
the least mean power, or the constraint that makes it impossible. A sweep reports the smallest
budget that has a placement.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joulescale.control.policy import Slo
from joulescale.engines.observation import Phase
from joulescale.planning.candidates import PHASES, CandidateTable
from joulescale.planning.forecast import LengthMix
from joulescale.planning.placement import Placement
from joulescale.planning.program import Infeasible, ProgramInput, Solved, solve_placement
from joulescale.planning.settings import DEFAULT_MARGIN, ReplicaBounds
from joulescale.planning.window import TrafficWindow
from joulescale.profiles.model import GpuProfile
from joulescale.twin.candidate_tables import TwinCandidateSource
from joulescale.twin.traces import Trace


@dataclass(frozen=True, slots=True)
class SizedPlan:
    gpus: int
    """The GPU budget (per product among the profiles)."""
    result: Solved | Infeasible
    power_watts: float = 0.0
    joules_per_token: float = 0.0
    headroom: dict[Phase, float] | None = None

    @property
    def placement(self) -> Placement | None:
        return self.result.placement if isinstance(self.result, Solved) else None

    def to_json(self) -> dict[str, Any]:
        if isinstance(self.result, Infeasible):
            return {"gpus": self.gpus, "feasible": False, "binding": self.result.binding, "detail": self.result.detail,
                    "solve_s": self.result.solve_s}
        placement = self.result.placement
        return {
            "gpus": self.gpus, "feasible": True, "gpus_used": placement.gpus, "gpus_given_back": self.gpus - placement.gpus,
            "roles": {phase: [{"profile": a.candidate.profile, "gpu_product": a.candidate.gpu_product,
                               "tensor_parallel_size": a.candidate.tensor_parallel_size,
                               "base_clock_mhz": a.candidate.base_clock_mhz, "replicas": a.replicas}
                              for a in placement.role(phase)] for phase in PHASES},
            "power_watts": self.power_watts, "joules_per_output_token": self.joules_per_token,
            "headroom": self.headroom, "capacity_rps": self.result.capacity_rps, "solve_s": self.result.solve_s,
        }


@dataclass(frozen=True, slots=True)
class Sizing:
    trace: Trace
    rate_rps: float
    mix: LengthMix
    slo: Slo
    margin: float
    candidates: int
    tables_computed: int
    tables_s: float
    plans: tuple[SizedPlan, ...]

    @property
    def mean_prompt_tokens(self) -> float:
        return sum(r.prompt_tokens for r in self.trace.requests) / len(self.trace.requests)

    @property
    def mean_output_tokens(self) -> float:
        return sum(r.output_tokens for r in self.trace.requests) / len(self.trace.requests)

    @property
    def smallest(self) -> SizedPlan | None:
        """The smallest budget with a placement (None: none of them)."""
        feasible = [p for p in self.plans if p.placement is not None]
        return min(feasible, key=lambda p: p.gpus) if feasible else None

    def to_json(self) -> dict[str, Any]:
        smallest = self.smallest
        return {
            "trace": self.trace.name, "requests": len(self.trace.requests), "duration_s": self.trace.duration_s,
            "rate_rps": self.rate_rps, "mean_prompt_tokens": self.mean_prompt_tokens,
            "mean_output_tokens": self.mean_output_tokens,
            "slo": {"ttft_ms": self.slo.ttft_ms, "tpot_ms": self.slo.tpot_ms, "percentile": self.slo.percentile},
            "margin": self.margin, "candidates": self.candidates, "tables_computed": self.tables_computed,
            "tables_s": self.tables_s, "plans": [p.to_json() for p in self.plans],
            "smallest_gpus": None if smallest is None else smallest.gpus,
        }


def trace_windows(trace: Trace, interval_s: float) -> list[TrafficWindow]:
    """The trace cut into consecutive windows of ``interval_s`` (the last one only if whole)."""
    rows = [(r.arrival_s, r.prompt_tokens, r.output_tokens) for r in trace.requests]
    count = int(trace.duration_s // interval_s)
    return [TrafficWindow.from_requests(i * interval_s, (i + 1) * interval_s, rows, seed=i) for i in range(count)]


def trace_mix(trace: Trace) -> LengthMix:
    return LengthMix.of([r.prompt_tokens for r in trace.requests], [r.output_tokens for r in trace.requests])


def size(trace: Trace, profiles: Sequence[GpuProfile], gpu_counts: Sequence[int], slo: Slo,
         margin: float = DEFAULT_MARGIN, cache_dir: Path | None = None, engine: str = "vllm",
         medium: str = "infiniband", rate_rps: float | None = None) -> Sizing:
    """Plan ``trace`` (at its own mean rate unless ``rate_rps``) on each budget of ``gpu_counts``."""
    models = {p.model for p in profiles}
    if len(models) != 1:
        raise ValueError(f"the profiles must serve one model, got {', '.join(sorted(models))}")
    source = TwinCandidateSource(profiles, models.pop(), cache_dir, engine, medium)
    if not source.candidates():
        raise ValueError("no profile leaves room for a useful KV cache: no candidate instance")
    mix = trace_mix(trace)
    rate = trace.requests_per_second if rate_rps is None else rate_rps
    if rate <= 0:
        raise ValueError(
            f"the trace has no rate of its own ({len(trace.requests)} requests over {trace.duration_s:g} s): "
            "give --rate"
        )
    started = time.perf_counter()
    tables = source.tables(mix, slo)
    tables_s = time.perf_counter() - started
    products = sorted({p.gpu_product for p in profiles})
    output_tokens = sum(r.output_tokens for r in trace.requests) / len(trace.requests)
    plans = tuple(_plan(tables, rate, output_tokens, margin, {product: gpus for product in products}, gpus)
                  for gpus in sorted(set(gpu_counts)))
    return Sizing(trace, rate, mix, slo, margin, len(source.candidates()), source.computed, tables_s, plans)


def _plan(tables: list[CandidateTable], rate: float, output_tokens: float, margin: float, budget: dict[str, int],
          gpus: int) -> SizedPlan:
    result = solve_placement(ProgramInput(tables, rate, margin, budget, ReplicaBounds(0, gpus, 0, gpus)))
    if isinstance(result, Infeasible):
        return SizedPlan(gpus, result)
    by_candidate = {t.candidate: t for t in tables}
    power = result.placement.power_watts(rate, by_candidate)
    tokens = rate * output_tokens
    headroom: dict[Phase, float] = {phase: result.capacity_rps[phase] / rate - 1.0 for phase in PHASES}
    return SizedPlan(gpus, result, power, power / tokens if tokens > 0 else 0.0, headroom)
