"""``twin compare --planner``: the coarse tier's four baselines on one long window.

- ``distserve``: a static placement at f_max sized for the window's peak: the planner's own
  program (same candidate tables, same margin) over the f_max candidates at the highest rate any
  planner interval of the window holds. It is told the peak in advance, as a static deployment
  sized by its operator is; when the GPU budget cannot hold the peak, the largest rate it holds.
- ``place-only``: the planner in the loop over the f_max candidates; static-max clocks.
- ``biscale``: the planner over every candidate (base clocks included) and BiScale's fine tier.
- ``joulescale``: the same planner and our fine tier, each replica's policy built with its role's
  planned base clock.

All four start from distserve's placement and are measured alike: the energy of the GPUs the
service holds, over the same horizon (``elastic.held_energy``); the GPU-seconds given back are
reported apart. The savings are decomposed by tier: placement (distserve - place-only), and
clocks, base and fine together (place-only - biscale or joulescale). The forecast error is each
forecaster's, replayed over the windows the joulescale run observed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from joulescale.control.controller import build_controller
from joulescale.control.policy import Slo
from joulescale.control.registry import twin_variant
from joulescale.engines.observation import Phase
from joulescale.planning import (
    Candidate,
    CandidateSource,
    CandidateTable,
    Infeasible,
    LengthMix,
    Planner,
    PlannerSettings,
    ProgramInput,
    ReplicaBounds,
    solve_placement,
)
from joulescale.planning.forecast import FORECASTERS, forecast_errors
from joulescale.planning.memory import burst_forecast_errors
from joulescale.planning.settings import (
    DEFAULT_INTERVAL_S,
    DEFAULT_MARGIN,
    DEFAULT_MEMORY_INTERVALS,
    DEFAULT_STARTUP_S,
)
from joulescale.profiles import shipped_catalog
from joulescale.profiles.model import GpuProfile
from joulescale.twin.candidate_tables import TwinCandidateSource
from joulescale.twin.cluster import ClusterConfig, InstanceControl
from joulescale.twin.elastic import (
    BaseClockControl,
    ElasticResult,
    HeldEnergy,
    ScheduledScaler,
    Target,
    held_energy,
    simulate_elastic,
)
from joulescale.twin.long_windows import HOUR_S, compressed_day, describe_day, hour_window
from joulescale.twin.metrics import RunSummary, meets_slo, summarise
from joulescale.twin.planner_loop import PlannerScaler, placement_of, target_of
from joulescale.twin.policies import GovernorActuator
from joulescale.twin.progress import Progress, quiet
from joulescale.twin.traces import Trace, TraceRequest, load_trace, scaled_window

PLANNED_BASELINES: tuple[str, ...] = ("distserve", "place-only", "biscale", "joulescale")
_FINE_TIER: dict[str, str] = {"distserve": "static-max", "place-only": "static-max", "biscale": "biscale",
                              "joulescale": "joulescale"}
WindowKind = Literal["hour", "day", "duration"]


@dataclass(frozen=True, slots=True)
class PlannedSettings:
    trace: str = "azure-conv"
    window: WindowKind = "hour"
    duration_s: float = HOUR_S
    """Only for ``window="duration"``; the day's compressed length for ``window="day"``."""
    rate_scale: float = 1.0
    """x the trace's own rate (1: its natural variation)."""
    day_swing: float = 3.0
    gpus: int = 16
    profile: str = "h100-sxm-llama-70b-tp4"
    slo: Slo = dataclasses.field(default_factory=lambda: Slo(ttft_ms=600.0, tpot_ms=100.0, percentile=99))
    interval_s: float = DEFAULT_INTERVAL_S
    startup_s: float = DEFAULT_STARTUP_S
    margin: float = DEFAULT_MARGIN
    memory_s: float | None = None
    """None: the planner's default (``DEFAULT_MEMORY_INTERVALS`` intervals)."""
    forecaster: str = "ewma-upper"
    engine: str = "vllm"
    kv_medium: str = "infiniband"
    cache_dir: Path | None = None
    baselines: tuple[str, ...] = PLANNED_BASELINES

    @property
    def remember_s(self) -> float:
        return DEFAULT_MEMORY_INTERVALS * self.interval_s if self.memory_s is None else self.memory_s

    def __post_init__(self) -> None:
        unknown = [b for b in self.baselines if b not in PLANNED_BASELINES]
        if unknown or not self.baselines:
            raise ValueError(f"unknown baselines {unknown}; known: {', '.join(PLANNED_BASELINES)}")
        if self.rate_scale <= 0 or self.duration_s <= 0 or self.gpus < 2:
            raise ValueError("rate_scale and duration_s must be positive, gpus at least 2")


@dataclass(slots=True)
class PlannedRun:
    summary: RunSummary
    held: HeldEnergy
    result: ElasticResult
    scaler: PlannerScaler | None


@dataclass(slots=True)
class PlannedComparison:
    settings: PlannedSettings
    trace: Trace
    requests: list[TraceRequest]
    window_text: str
    distserve: Target
    distserve_note: str
    peak_rps: float
    runs: dict[str, PlannedRun]
    wall_s: float


def replay_window(trace: Trace, settings: PlannedSettings) -> tuple[list[TraceRequest], str]:
    if settings.window == "hour":
        return hour_window(trace, settings.rate_scale), (
            f"one hour of {trace.name} at {settings.rate_scale:g} x its own rate (the trace holds "
            f"{trace.duration_s / 60.0:.1f} min; its first minutes fill the hour)")
    if settings.window == "day":
        day_s = settings.duration_s
        return (compressed_day(trace, day_s, settings.day_swing, settings.rate_scale),
                describe_day(day_s, settings.day_swing))
    return (scaled_window(trace, settings.rate_scale, settings.duration_s),
            f"{settings.duration_s:g} s of {trace.name} at {settings.rate_scale:g} x its own rate")


def peak_rate_rps(requests: Sequence[TraceRequest], interval_s: float) -> float:
    """The most requests any planner interval (aligned at 0) of the window holds, per second."""
    counts: dict[int, int] = {}
    for r in requests:
        counts[int(r.arrival_s // interval_s)] = counts.get(int(r.arrival_s // interval_s), 0) + 1
    return max(counts.values(), default=0) / interval_s


def _fmax_only(tables: Sequence[CandidateTable], profiles: dict[str, GpuProfile]) -> list[CandidateTable]:
    return [t for t in tables if t.candidate.base_clock_mhz == profiles[t.candidate.profile].max_sm_clock_mhz]


class _FmaxSource:
    """The candidate source restricted to f_max (place-only's planner)."""

    def __init__(self, source: CandidateSource, profiles: dict[str, GpuProfile]) -> None:
        self._source, self._profiles = source, profiles

    def candidates(self) -> Sequence[Candidate]:
        return [c for c in self._source.candidates()
                if c.base_clock_mhz == self._profiles[c.profile].max_sm_clock_mhz]

    def tables(self, mix: LengthMix, slo: Slo) -> list[CandidateTable]:
        return _fmax_only(self._source.tables(mix, slo), self._profiles)


def size_distserve(tables: Sequence[CandidateTable], peak_rps: float, settings: PlannedSettings,
                   product: str) -> tuple[Target, str, bool]:
    """The f_max placement for the peak, or for the largest rate the budget holds (5 % steps);
    True when the budget capped it."""
    rate = peak_rps
    for _ in range(200):
        solved = solve_placement(ProgramInput(list(tables), rate, settings.margin, {product: settings.gpus},
                                              ReplicaBounds()))
        if not isinstance(solved, Infeasible):
            target, _ = target_of(solved.placement)
            note = (f"sized for the peak {peak_rps:.2f} req/s" if rate == peak_rps else
                    f"the budget holds {rate:.2f} req/s of the peak {peak_rps:.2f} req/s")
            return (target, f"{note} (+{settings.margin:.0%} margin) at f_max: {solved.placement.describe()}",
                    rate != peak_rps)
        rate *= 0.95
    raise ValueError(f"no f_max placement of {settings.gpus} GPUs meets the SLO at any rate")


DISTSERVE_RAISES = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
"""Rates distserve is sized for, as multiples of the peak, until its replay meets the SLO."""


def _slo_meeting_static(requests: Sequence[TraceRequest], tables: Sequence[CandidateTable], peak_rps: float,
                        settings: PlannedSettings, profiles: dict[str, GpuProfile],
                        product: str) -> tuple[Target, str, ElasticResult]:
    """distserve's placement: sized by the tables for the peak, then for a higher rate while its
    static-max replay of the window misses the SLO (the tables assume Poisson arrivals; a bursty
    trace needs more), up to the budget. Returns the placement, how it was sized and its replay."""
    previous: Target | None = None
    last: tuple[Target, str, ElasticResult] | None = None
    for raise_by in DISTSERVE_RAISES:
        target, note, capped = size_distserve(tables, peak_rps * raise_by, settings, product)
        if target == previous:
            if capped:
                break  # the budget holds no more
            continue  # the same placement holds that rate too: the replay would be the same
        previous = target
        cluster = _cluster(target, profiles, settings)
        control = base_clock_control("static-max", cluster, settings.slo)
        result = simulate_elastic(requests, cluster, control, ScheduledScaler(()), settings.startup_s,
                                  {"prefill": target.prefill_base_mhz, "decode": target.decode_base_mhz})
        if raise_by != 1.0:
            note = f"{note}; raised to {raise_by:g} x the peak: the replay missed the SLO below it"
        last = (target, note, result)
        if meets_slo(summarise(result, settings.slo), settings.slo):
            return last
    assert last is not None
    target, note, result = last
    return target, f"{note}; misses the SLO even so (the most the budget holds)", result


def base_clock_control(name: str, cluster: ClusterConfig, slo: Slo) -> BaseClockControl:
    """The agent's controller for a twin variant, rebuilt per replica with its profile and base clock."""
    _, entry = twin_variant(name)

    def control(role: str, profile: GpuProfile, base_mhz: int | None) -> InstanceControl:
        controller = build_controller(entry.name, profile, slo, base_clock_mhz=base_mhz,
                                      token_budget=cluster.prefill_token_budget, role=role)  # type: ignore[arg-type]
        return InstanceControl(controller.policy, GovernorActuator(controller.governor), observes=controller.observes)

    return control


def _cluster(target: Target, profiles: dict[str, GpuProfile], settings: PlannedSettings) -> ClusterConfig:
    decode = profiles[target.decode_profile or settings.profile]
    prefill = profiles[target.prefill_profile or settings.profile]
    return ClusterConfig(decode, target.prefill, target.decode, kv_medium=settings.kv_medium, engine=settings.engine,
                         prefill_profile=prefill if prefill.name != decode.name else None)


def compare_planned(settings: PlannedSettings, progress: Progress = quiet,
                    source: CandidateSource | None = None) -> PlannedComparison:
    """``source``: the candidate tables (default: computed by the twin, cached in ``cache_dir``)."""
    started = time.perf_counter()
    trace = load_trace(settings.trace)
    requests, window_text = replay_window(trace, settings)
    profile = shipped_catalog().get(settings.profile)
    catalog = shipped_catalog()
    profiles = {p.name: p for p in map(catalog.get, catalog.names()) if p.model == profile.model
                and p.gpu_product == profile.gpu_product}
    if source is None:
        source = TwinCandidateSource(profiles.values(), profile.model, settings.cache_dir, settings.engine,
                                     settings.kv_medium, products=[profile.gpu_product])
    whole = LengthMix.of([r.prompt_tokens for r in requests], [r.output_tokens for r in requests])
    progress("candidate tables", 0, len(settings.baselines) + 1)
    peak = peak_rate_rps(requests, settings.interval_s)
    fmax_tables = _fmax_only(source.tables(whole, settings.slo), profiles)
    distserve, note, static = _slo_meeting_static(requests, fmax_tables, peak, settings, profiles, profile.gpu_product)
    start_cluster = _cluster(distserve, profiles, settings)
    runs: dict[str, PlannedRun] = {}
    bases: dict[Phase, int | None] = {"prefill": distserve.prefill_base_mhz, "decode": distserve.decode_base_mhz}
    for k, name in enumerate(settings.baselines):
        progress(f"{name} over {requests[-1].arrival_s if requests else 0:.0f} s", k + 1, len(settings.baselines) + 1)
        control = base_clock_control(_FINE_TIER[name], start_cluster, settings.slo)
        if name == "distserve":
            runs[name] = PlannedRun(summarise(static, settings.slo), held_energy(static, 0.0, settings.gpus), static,
                                    None)
            continue
        planner_settings = PlannerSettings(settings.slo, {profile.gpu_product: settings.gpus},
                                           interval_s=settings.interval_s, margin=settings.margin,
                                           startup_s=settings.startup_s, forecaster=settings.forecaster,
                                           memory_s=settings.memory_s)
        planner_source = _FmaxSource(source, profiles) if name == "place-only" else source
        planner = Planner(planner_settings, planner_source)
        scaler = PlannerScaler(planner, placement_of(distserve, planner_source.candidates()))
        result = simulate_elastic(requests, start_cluster, control, scaler, settings.startup_s, bases,
                                  profiles=profiles.__getitem__, gpu_budget=settings.gpus)
        runs[name] = PlannedRun(summarise(result, settings.slo), held_energy(result, 0.0, settings.gpus), result,
                                scaler)
    horizon = max(run.result.end_s for run in runs.values())
    for run in runs.values():  # one horizon for all: the GPUs held are counted over the same time
        run.held = held_energy(run.result, horizon, settings.gpus)
        run.summary = dataclasses.replace(summarise(run.result, settings.slo, horizon), prefill=run.held.prefill,
                                          decode=run.held.decode)
    return PlannedComparison(settings, trace, requests, window_text, distserve, note, peak, runs,
                             time.perf_counter() - started)


def _saving(before: float, after: float) -> float:
    return (before - after) / before if before > 0 else math.nan


def _replicas(run: PlannedRun, horizon_s: float) -> dict[str, float]:
    """Time-weighted mean replicas held per role."""
    out: dict[str, float] = {}
    for phase in ("prefill", "decode"):
        held = sum(t.held_until(horizon_s) - t.held_s for t in run.result.tenures if t.phase == phase)
        out[phase] = held / horizon_s if horizon_s > 0 else math.nan
    return out


def to_json(comparison: PlannedComparison) -> dict[str, object]:
    s = comparison.settings
    runs = comparison.runs
    horizon = max(run.summary.duration_s for run in runs.values())
    policies: dict[str, object] = {}
    for name, run in runs.items():
        doc = run.summary.to_json()
        doc["gpus"] = run.held.to_json()
        doc["mean_replicas"] = _replicas(run, horizon)
        doc["plan_changes"] = len(run.result.plans)
        doc["plans"] = [{"at_s": at, **dataclasses.asdict(target)} for at, target in run.result.plans]
        if run.scaler is not None:
            doc["planner"] = {"intervals": len(run.scaler.decisions), "mixed_role_intervals": run.scaler.mixed,
                              "infeasible_intervals": sum(1 for d in run.scaler.decisions if d.infeasible),
                              "solve_s_max": max((d.solve_s for d in run.scaler.decisions), default=0.0),
                              "decisions": [{"at_s": d.now_s, "reason": d.reason,
                                             "proposed": d.proposed.describe() if d.proposed else None,
                                             "planned_rps": d.planned_rate_rps} for d in run.scaler.decisions]}
        policies[name] = doc
    phases: tuple[Phase | Literal["total"], ...] = ("prefill", "decode", "total")

    def energy(name: str, phase: str) -> float:
        summary = runs[name].summary
        return summary.total_j if phase == "total" else getattr(summary, phase).total_j

    savings: dict[str, dict[str, float]] = {}
    if "distserve" in runs:
        for name in runs:
            if name != "distserve":
                savings[name] = {p: _saving(energy("distserve", p), energy(name, p)) for p in phases}
    tiers: dict[str, dict[str, float]] = {}
    if {"distserve", "place-only"} <= runs.keys():
        base = {p: energy("distserve", p) for p in phases}
        tiers["placement"] = {p: (base[p] - energy("place-only", p)) / base[p] for p in phases}
        for fine in ("biscale", "joulescale"):
            if fine in runs:
                tiers[f"clocks_{fine}"] = {p: (energy("place-only", p) - energy(fine, p)) / base[p] for p in phases}
    forecast: dict[str, object] = {}
    observed = next((run.scaler.windows for name in ("joulescale", "biscale", "place-only")
                     if name in runs and (run := runs[name]).scaler is not None), None)
    if observed:
        vs_burst: dict[str, object] = {}
        for name in FORECASTERS:
            try:
                forecast[name] = forecast_errors(name, observed).to_json()
                for memory_s in (0.0, s.remember_s):
                    errors = burst_forecast_errors(name, observed, memory_s, s.slo.percentile)
                    vs_burst[errors.forecaster] = errors.to_json()
            except ValueError as error:
                forecast[name] = {"error": str(error)}
        forecast["vs_burst"] = vs_burst
        forecast["in_loop"] = s.forecaster
    return {
        "trace": s.trace,
        "window": {"kind": s.window, "text": comparison.window_text, "requests": len(comparison.requests),
                   "rate_scale": s.rate_scale, "peak_interval_requests_per_second": comparison.peak_rps},
        "requests_per_second": (len(comparison.requests) / comparison.requests[-1].arrival_s
                                if comparison.requests and comparison.requests[-1].arrival_s > 0 else 0.0),
        "config": {"gpus": s.gpus, "profile": s.profile, "slo": {"ttft_ms": s.slo.ttft_ms, "tpot_ms": s.slo.tpot_ms,
                                                                  "percentile": s.slo.percentile},
                   "view": "metrics", "planner": {"interval_s": s.interval_s, "startup_s": s.startup_s,
                                                  "margin": s.margin, "forecaster": s.forecaster,
                                                  "memory_s": s.remember_s},
                   "distserve": comparison.distserve_note,
                   "energy": "GPUs while held by the service; given-back GPU-seconds reported under "
                             "policies.<name>.gpus and not counted as saved"},
        "policies": policies,
        "savings_vs_distserve": savings,
        "tiers": tiers,
        "forecast_error": forecast,
        "wall_s": comparison.wall_s,
    }


def text(comparison: PlannedComparison) -> str:
    doc = to_json(comparison)
    lines = [f"window: {comparison.window_text}; {len(comparison.requests)} requests; peak interval "
             f"{comparison.peak_rps:.2f} req/s", f"distserve: {comparison.distserve_note}",
             f"planner: every {comparison.settings.interval_s:g} s, start-up {comparison.settings.startup_s:g} s, "
             f"memory {comparison.settings.remember_s:g} s, "
             f"forecaster {comparison.settings.forecaster}; energy of the GPUs held (given-back GPU-hours apart, "
             "not counted as saved)", "",
             f"{'policy':<12} {'prefill kJ':>11} {'decode kJ':>10} {'total kJ':>9} {'SLO att.':>8} "
             f"{'P99 TTFT':>9} {'P99 TPOT':>9} {'GPU-h held':>10} {'given back':>10} {'changes':>7}"]
    for name, run in comparison.runs.items():
        s = run.summary
        lines.append(f"{name:<12} {s.prefill.total_j / 1e3:>11.0f} {s.decode.total_j / 1e3:>10.0f} "
                     f"{s.total_j / 1e3:>9.0f} {100 * s.slo_attainment:>7.2f}% {s.ttft_ms_at_percentile:>7.0f}ms "
                     f"{s.tpot_ms_at_percentile:>7.0f}ms {run.held.gpu_seconds_held / 3600:>10.2f} "
                     f"{run.held.gpu_seconds_given_back / 3600:>10.2f} {len(run.result.plans):>7}")
    savings = doc["savings_vs_distserve"]
    assert isinstance(savings, dict)
    if savings:
        lines.append("")
        for name, by_phase in savings.items():
            lines.append(f"saving vs distserve, {name}: prefill {100 * by_phase['prefill']:.1f} %, decode "
                         f"{100 * by_phase['decode']:.1f} %, total {100 * by_phase['total']:.1f} %")
    tiers = doc["tiers"]
    assert isinstance(tiers, dict)
    for tier, by_phase in tiers.items():
        lines.append(f"tier {tier}: prefill {100 * by_phase['prefill']:.1f} %, decode {100 * by_phase['decode']:.1f} %,"
                     f" total {100 * by_phase['total']:.1f} % of distserve")
    forecast = doc["forecast_error"]
    assert isinstance(forecast, dict)
    for name in FORECASTERS:
        errors = forecast.get(name)
        if isinstance(errors, dict) and "mean_abs_pct" in errors:
            lines.append(f"forecast {name}: mean |error| {errors['mean_abs_pct']:.1f} %, under by >10 % in "
                         f"{100 * errors['under_share']:.0f} % of intervals (worst {errors['worst_under_pct']:.0f} %)")
    bursts = forecast.get("vs_burst")
    if isinstance(bursts, dict):
        for name, errors in bursts.items():
            lines.append(f"against the burst rate, {name}: under by >10 % in {100 * errors['under_share']:.0f} % "
                         f"of intervals (worst {errors['worst_under_pct']:.0f} %), over {errors['mean_over_pct']:.0f} %"
                         " on average")
    return "\n".join(lines)
