"""The core planner (joulescale.planning.Planner) behind the loop's ServicePlanner seam.

One Planner per service (it keeps its forecaster's and hysteresis' state), rebuilt when the
settings it was made from change. Candidate tables come from the twin (TwinCandidateSource),
shared by the services of one model and engine, so a length mix computed once serves all.
A role's Deployment has one tensor-parallel size and one base clock: its candidates are only
those of its TP and GPU products within spec.energy.clocks, and when the program splits a role
over several clocks, the role runs at the highest of them (the SLO-safe side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from joulescale.api import EnergyAwareLLMServiceSpec
from joulescale.control.policy import Slo
from joulescale.planning import (
    Allocation,
    Candidate,
    CandidateSource,
    CandidateTable,
    LengthMix,
    Placement,
    Planner,
    PlannerSettings,
    ReplicaBounds,
)
from joulescale.planning.settings import DEFAULT_STARTUP_S
from joulescale.profiles import ProfileCatalog
from joulescale.twin.candidate_tables import TwinCandidateSource
from joulescale_operator.planloop.energy import slo_at_risk
from joulescale_operator.planloop.loop import CurrentState, PlanChoice, PlanningFailed
from joulescale_operator.planloop.observation import ROLES, ServiceObservation
from joulescale_operator.planloop.window import traffic_window


@dataclass(frozen=True, slots=True)
class RoleShape:
    tensor_parallel_size: int
    products: frozenset[str]


class RoleCandidates:
    """A CandidateSource limited to what each role's Deployment can run."""

    def __init__(self, inner: CandidateSource, shapes: dict[str, RoleShape], clocks: tuple[int, int]) -> None:
        self._inner = inner
        self._shapes = shapes
        self._clocks = clocks

    def _allowed(self, candidate: Candidate) -> bool:
        shape = self._shapes[candidate.phase]
        return (
            candidate.tensor_parallel_size == shape.tensor_parallel_size
            and candidate.gpu_product in shape.products
            and self._clocks[0] <= candidate.base_clock_mhz <= self._clocks[1]
        )

    def candidates(self) -> Sequence[Candidate]:
        return [c for c in self._inner.candidates() if self._allowed(c)]

    def tables(self, mix: LengthMix, slo: Slo) -> list[CandidateTable]:
        return [t for t in self._inner.tables(mix, slo) if self._allowed(t.candidate)]


class CorePlanner:
    """ServicePlanner over joulescale.planning."""

    def __init__(
        self, profiles: ProfileCatalog, cache_dir: Path | None = None, startup_s: float = DEFAULT_STARTUP_S
    ) -> None:
        self._profiles = profiles
        self._cache_dir = cache_dir
        self._startup_s = startup_s
        self._sources: dict[tuple[str, str, frozenset[int]], TwinCandidateSource] = {}
        self._planners: dict[tuple[str, str], tuple[PlannerSettings, RoleCandidates, Planner]] = {}

    def forget(self, key: tuple[str, str]) -> None:
        self._planners.pop(key, None)

    def plan(
        self, key: tuple[str, str], spec: EnergyAwareLLMServiceSpec, observation: ServiceObservation,
        current: CurrentState, now_s: float,
    ) -> PlanChoice:
        _, source, planner = self._planner(key, spec)
        if not source.candidates():
            raise PlanningFailed(
                f"no profile of {spec.model.name} at the roles' TP sizes and GPU products within the clock bounds"
            )
        window = traffic_window(observation)
        missed = slo_at_risk(observation, spec)
        running = current_placement(current, source.candidates())
        decision = planner.plan(window, running, now_s, slo_missed=missed)
        if decision.infeasible is not None:
            raise PlanningFailed(decision.reason)
        if decision.forecast is None:  # no request yet: nothing to size for, keep what runs
            return PlanChoice(dict(current.replicas), _clocks(running, current), 0.0, None, decision.reason)
        return PlanChoice(
            replicas={role: decision.placement.replicas(role) for role in ROLES},
            base_clock_mhz=_clocks(decision.placement, current),
            forecast_rps=decision.planned_rate_rps,
            predicted_power_watts=decision.power_watts,
            reason=decision.reason,
        )

    def _planner(self, key: tuple[str, str], spec: EnergyAwareLLMServiceSpec) -> tuple[
        PlannerSettings, RoleCandidates, Planner
    ]:
        settings = planner_settings(spec, self._startup_s)
        known = self._planners.get(key)
        if known is not None and known[0] == settings:
            return known
        shapes = {
            role: RoleShape(r.tensor_parallel_size, frozenset(r.gpu.products))
            for role, r in (("prefill", spec.prefill), ("decode", spec.decode))
        }
        sizes = frozenset(s.tensor_parallel_size for s in shapes.values())
        source_key = (spec.model.name, spec.engine.name, sizes)
        if source_key not in self._sources:
            profiles = [p for p in self._profiles.profiles if p.tensor_parallel_size in sizes]
            self._sources[source_key] = TwinCandidateSource(
                profiles, spec.model.name, self._cache_dir, engine=spec.engine.name
            )
        bounds = spec.energy.clocks
        clocks = (bounds.min_mhz or 0, bounds.max_mhz or 1_000_000)
        source = RoleCandidates(self._sources[source_key], shapes, clocks)
        made = (settings, source, Planner(settings, source))
        self._planners[key] = made
        return made


def planner_settings(spec: EnergyAwareLLMServiceSpec, startup_s: float = DEFAULT_STARTUP_S) -> PlannerSettings:
    """The spec's SLO, bounds, interval, margin and memory; the GPU budget per product is what the
    roles' maximum replicas may hold; ``startup_s`` is the cluster's (the operator's flag)."""
    planner = spec.energy.planner
    budget: dict[str, int] = {}
    limits = {}
    for role, r in (("prefill", spec.prefill), ("decode", spec.decode)):
        low, high = (r.autoscaling.min_replicas, r.autoscaling.max_replicas) if r.autoscaling else (
            r.replicas or 0, r.replicas or 0)
        limits[role] = (low, high)
        for product in r.gpu.products:
            budget[product] = budget.get(product, 0) + high * r.tensor_parallel_size
    return PlannerSettings(
        slo=Slo(spec.slo.ttft_ms, spec.slo.tpot_ms, spec.slo.percentile),
        gpu_budget=budget,
        replicas=ReplicaBounds(limits["prefill"][0], limits["prefill"][1], limits["decode"][0], limits["decode"][1]),
        interval_s=float(planner.interval_seconds),
        margin=planner.safety_margin_percent / 100.0,
        startup_s=startup_s,
        memory_s=None if planner.memory_seconds is None else float(planner.memory_seconds),
    )


def current_placement(current: CurrentState, candidates: Sequence[Candidate]) -> Placement:
    """What runs, as the planner's candidates: each role's count at its planned base clock (the
    candidate of that role with the nearest clock; the highest before any plan)."""
    allocations = []
    for role in ROLES:
        count = current.replicas[role]
        own = [c for c in candidates if c.phase == role]
        if count <= 0 or not own:
            continue
        planned = None
        if current.plan is not None:
            planned = current.plan.prefill_base_clock_mhz if role == "prefill" else current.plan.decode_base_clock_mhz
        if planned is None:
            chosen = max(own, key=lambda c: c.base_clock_mhz)
        else:
            chosen = min(own, key=lambda c: abs(c.base_clock_mhz - planned))
        allocations.append(Allocation(chosen, count))
    return Placement.of(allocations)


def _clocks(placement: Placement, current: CurrentState) -> dict[str, int | None]:
    clocks: dict[str, int | None] = {}
    for role in ROLES:
        allocated = placement.role(role)
        clocks[role] = max(a.candidate.base_clock_mhz for a in allocated) if allocated else None
    return clocks
