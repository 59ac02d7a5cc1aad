"""Policies side by side on one trace window: the engine of ``joulescale twin compare``.

Steps: load the trace; resolve an ``auto`` SLO (``feasibility``); pick the P/D split (the one with
the highest static-max capacity unless given); find the capacity (cached); replay the window at
``load`` x capacity, at the trace's own rate or at a given rate, under each policy; choose
static-best's clocks by a sweep; compute the oracle bound from the realised runs. When no rate
meets the SLO, the comparison carries the reason (``feasibility.explain``); without a given rate
there is then nothing to replay, and ``NoFeasibleRateError`` carries it instead.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from joulescale.control.clocks import NoAllowedClockError, allowed_clocks_mhz, levels_mhz
from joulescale.control.registry import reference_variant, twin_variant
from joulescale.engines.observation import Phase
from joulescale.profiles import ProfileError, profile_by_name_or_path
from joulescale.profiles.model import GpuProfile
from joulescale.twin import feasibility, limits
from joulescale.twin.capacity import (
    Capacity,
    CapacityCache,
    NoRateMeetsSloError,
    find_capacity_scale,
    window_requests,
)
from joulescale.twin.cluster import TOPOLOGIES, ClusterConfig
from joulescale.twin.feasibility import Feasibility
from joulescale.twin.limits import SettingError
from joulescale.twin.metrics import RunSummary, meets_slo, summarise
from joulescale.twin.oracle import OracleBound, oracle_bound
from joulescale.twin.policies import policy_run_setup
from joulescale.twin.progress import Progress, quiet
from joulescale.twin.settings import ORACLE, CompareSettings
from joulescale.twin.simulator import AbortRule, RunResult, simulate
from joulescale.twin.traces import (
    Trace,
    TraceRequest,
    check_replayable,
    load_trace,
    scaled_window,
    span_holding,
)

STATIC_BEST_LEVELS = 8
"""Clocks swept per phase for static-best (evenly over the allowed range, the top one included)."""


class NoFeasibleRateError(ValueError):
    """No rate meets the SLO and no ``--rate`` was given: ``feasibility`` says why and what helps."""

    def __init__(self, explanation: Feasibility) -> None:
        super().__init__(explanation.text())
        self.feasibility = explanation


@dataclass(slots=True)
class Comparison:
    settings: CompareSettings
    """As run: an ``auto`` SLO is resolved into ``settings.slo``."""
    trace: Trace
    cluster: ClusterConfig
    capacity: Capacity | None
    """None when no rate meets the SLO (then ``feasibility`` says why)."""
    rate_scale: float
    requests: list[TraceRequest]
    summaries: dict[str, RunSummary]
    runs: dict[str, RunResult]
    static_best_mhz: dict[Phase, int]
    oracle: OracleBound | None
    window_start_s: float
    wall_s: float
    split_capacities: dict[int, float]
    feasibility: Feasibility | None = None
    auto_slo_from: str | None = None
    """What an ``auto`` SLO was measured on (None: the SLO was given)."""

    @property
    def requests_per_second(self) -> float:
        """The offered rate: the trace's mean rate x the rate scale (load x capacity, or as given)."""
        return self.rate_scale * self.trace.requests_per_second

    @property
    def window_requests_per_second(self) -> float:
        """What the replayed window actually holds (bursty traces differ from their mean)."""
        return len(self.requests) / self.settings.duration_s


def _window_start(trace: Trace, seed: int) -> float:
    if seed == 0:
        return 0.0
    return random.Random(seed).uniform(0.0, trace.duration_s)


def _probe_duration_s(trace: Trace, settings: CompareSettings, start_s: float, scale: float) -> float:
    """The run's duration, or longer when that holds too few requests for the percentile."""
    return max(settings.duration_s, span_holding(trace, window_requests(settings.slo.percentile), start_s) / scale)


def _capacity(trace: Trace, cluster: ClusterConfig, settings: CompareSettings, start_s: float,
              cache: CapacityCache, note: Callable[[str], None] = lambda label: None) -> Capacity | None:
    """The static-max capacity of ``cluster``, or None when even a tiny rate misses the SLO."""
    key = CapacityCache.key({
        "trace": trace.digest, "duration_s": settings.duration_s, "start_s": start_s,
        "window_requests": window_requests(settings.slo.percentile),
        "cluster": replace(cluster, view="metrics").describe(), "slo": [settings.slo.ttft_ms, settings.slo.tpot_ms, settings.slo.percentile],
        "bounds": None if settings.bounds is None else [settings.bounds.min_mhz, settings.bounds.max_mhz],
        "power_limit_watts": [cluster.profile.power_limit_watts, cluster.profile_of("prefill").power_limit_watts],
        "settle_s": [cluster.settle_s("prefill"), cluster.settle_s("decode")],
        # A profile file may reuse a shipped profile's name with other physics: key on the content.
        "physics": [_digest(cluster.profile_of("prefill")), _digest(cluster.profile)],
        "topology": cluster.topology,
        "version": 5,  # 3: chunked prefill; 4: a window long enough for the percentile; 5: topologies
    })
    cached = cache.get(key)
    if cached is not None:
        return cached
    setup = policy_run_setup(reference_variant(), replace(cluster, view="metrics"), settings.slo, settings.bounds)
    probed: list[int] = []

    def meets(scale: float) -> bool:
        window = scaled_window(trace, scale, _probe_duration_s(trace, settings, start_s, scale), start_s)
        probed.append(len(window))
        note(f"capacity probe {len(probed)} at {scale * trace.requests_per_second:.3g} req/s")
        allowed = int((len(window) - 1) * (1.0 - settings.slo.percentile / 100.0)) + 1
        rule = AbortRule(settings.slo.ttft_ms / 1000.0, settings.slo.tpot_ms / 1000.0, allowed)
        result = simulate(window, setup.cluster, setup.control, rule)
        return not result.aborted and meets_slo(summarise(result, settings.slo), settings.slo)

    try:
        scale, probes = find_capacity_scale(meets)
    except NoRateMeetsSloError:
        return None
    duration = _probe_duration_s(trace, settings, start_s, scale)
    capacity = Capacity(scale, scale * trace.requests_per_second, probes,
                        window_requests=len(scaled_window(trace, scale, duration, start_s)), window_s=duration)
    cache.put(key, capacity)
    return capacity


def _cluster(settings: CompareSettings, profile: GpuProfile, prefill_profile: GpuProfile,
             prefill_instances: int) -> ClusterConfig:
    left = settings.gpus - prefill_instances * prefill_profile.tensor_parallel_size
    return ClusterConfig(
        profile=profile, prefill_instances=prefill_instances,
        decode_instances=left // profile.tensor_parallel_size,
        kv_medium=settings.kv_medium, view=settings.view, scrape_period_s=settings.scrape_period_s,
        scrape_delay_s=settings.scrape_delay_s, engine=settings.engine, clock_settle_s=settings.clock_settle_s,
        prefill_profile=prefill_profile if prefill_profile.name != profile.name else None)


def _digest(profile: GpuProfile) -> str:
    return hashlib.sha256(profile.model_dump_json().encode()).hexdigest()[:16]


def _profile(setting: str, name: str) -> GpuProfile:
    """A shipped profile by name, or a profile file by path (it has a '/' or a .yaml/.yml suffix)."""
    try:
        return profile_by_name_or_path(name)
    except ProfileError as error:
        raise SettingError(setting, str(error)) from None


def _capped(profile: GpuProfile, settings: CompareSettings, setting: str) -> GpuProfile:
    """The profile under ``power_limit_watts``, which must cover what the GPU draws at any clock
    (the profile's own rule: idle power and each phase's floor stay under the cap); ``setting``
    names the profile's flag when its own limit is the one at fault."""
    watts = settings.power_limit_watts
    if watts is not None:
        needed = max(profile.idle_power_watts, profile.prefill.power.floor_watts, profile.decode.power.floor_watts)
        if watts < needed:
            raise SettingError("power_limit_watts", f"power limit {watts:g} W is below the {needed:g} W that "
                                                    f"profile {profile.name} draws at its lowest clock")
        profile = profile.model_copy(update={"power_limit_watts": watts})
        setting = "power_limit_watts"
    limit = profile.power_limit_watts
    for phase, power in (("prefill", profile.prefill.power), ("decode", profile.decode.power)):
        if limit <= power.floor_watts < power.fmax_watts:  # the cap would hold the phase at 0 MHz
            raise SettingError(setting, f"power limit {limit:g} W leaves no clock for {phase} on profile "
                                        f"{profile.name}: it draws {power.floor_watts:g} W at its lowest clock; "
                                        "the limit must exceed it")
    return profile


def _check_inputs(settings: CompareSettings, trace: Trace, profile: GpuProfile, prefill_profile: GpuProfile) -> None:
    """What needs the profile or the trace: clock bounds some clock meets, requests that fit."""
    for checked in (profile, prefill_profile):
        try:
            allowed_clocks_mhz(checked.supported_sm_clocks_mhz, settings.bounds)
        except NoAllowedClockError as error:
            raise SettingError("bounds", f"{error} for profile {checked.name}") from None
    kv = f"{profile.name}: {profile.kv_capacity_tokens} tokens"
    if prefill_profile.name != profile.name:
        kv = f"prefill {prefill_profile.name}: {prefill_profile.kv_capacity_tokens} prompt tokens; decode {kv}"
    check_replayable(trace, prefill_profile.kv_capacity_tokens, profile.kv_capacity_tokens,
                     f"the KV cache of one instance ({kv})")


def choose_split(trace: Trace, settings: CompareSettings, profile: GpuProfile, start_s: float,
                 cache: CapacityCache, note: Callable[[str], None] = lambda label: None,
                 ) -> tuple[ClusterConfig, Capacity | None, dict[int, float]]:
    """The given split, or the one whose static-max capacity is highest (ties: fewer prefill);
    an aggregated cluster has no split: as many instances as the GPUs hold.

    A split where no rate meets the SLO has capacity 0; when none has any, the capacity is None
    and the split is the one whose static-max meets the SLO for the most requests at the
    replayed rate (``settings.rate``; without one, the first candidate: nothing will be replayed).
    """
    if settings.topology == "aggregated":
        cluster = _aggregated_cluster(settings, profile)
        limits.check_work(settings.duration_s, settings.gpus, 1)
        return cluster, _capacity(trace, cluster, settings, start_s, cache, note), {}
    prefill_profile = _prefill_profile(settings, profile)
    candidates, most = _split_candidates(settings, profile, prefill_profile)
    limits.check_work(settings.duration_s, settings.gpus, len(candidates))
    found: dict[int, tuple[ClusterConfig, Capacity | None]] = {}
    for prefill in candidates:
        cluster = _cluster(settings, profile, prefill_profile, prefill)
        found[prefill] = (cluster, _capacity(trace, cluster, settings, start_s, cache, _prefixed(note, prefill, most)))
    rates = {p: c.requests_per_second if c is not None else 0.0 for p, (_, c) in found.items()}
    if any(c is not None for _, c in found.values()):
        best = max(found, key=lambda p: (rates[p], -p))
    elif settings.rate is not None and len(candidates) > 1:
        scale = _given_scale(trace, settings)
        window = scaled_window(trace, scale, settings.duration_s, start_s)

        def attainment(prefill: int) -> float:
            note(f"split {prefill}/{len(candidates)}: static-max at the replayed rate")
            return summarise(_run(reference_variant(), found[prefill][0], settings, window), settings.slo).slo_attainment

        scores = {p: attainment(p) for p in candidates}
        best = max(candidates, key=lambda p: (scores[p], -p))
    else:
        best = candidates[0]
    return found[best][0], found[best][1], rates


def _aggregated_cluster(settings: CompareSettings, profile: GpuProfile) -> ClusterConfig:
    """As many aggregated instances (both phases on each) as the GPUs hold."""
    instances = settings.gpus // profile.tensor_parallel_size
    if instances < 1:
        raise SettingError("gpus", f"{settings.gpus} GPUs cannot hold one TP{profile.tensor_parallel_size} instance")
    return ClusterConfig(
        profile=profile, prefill_instances=0, decode_instances=0, topology="aggregated",
        aggregated_instances=instances, kv_medium=settings.kv_medium, view=settings.view,
        scrape_period_s=settings.scrape_period_s, scrape_delay_s=settings.scrape_delay_s, engine=settings.engine,
        clock_settle_s=settings.clock_settle_s)


def _prefill_profile(settings: CompareSettings, profile: GpuProfile) -> GpuProfile:
    if not settings.prefill_profile:
        return profile
    return _capped(_profile("prefill_profile", settings.prefill_profile), settings, "prefill_profile")


def _split_candidates(settings: CompareSettings, profile: GpuProfile,
                      prefill_profile: GpuProfile) -> tuple[list[int], int]:
    """The prefill instance counts to try (the given one, or every one the GPUs hold), and the most."""
    tp_prefill, tp_decode = prefill_profile.tensor_parallel_size, profile.tensor_parallel_size
    most = (settings.gpus - tp_decode) // tp_prefill
    if most < 1:
        raise SettingError("gpus", f"{settings.gpus} GPUs cannot hold one TP{tp_prefill} prefill and one "
                                   f"TP{tp_decode} decode instance; a P/D cluster needs at least 2 instances")
    if settings.prefill_instances is not None and not 1 <= settings.prefill_instances <= most:
        raise SettingError("prefill_instances", f"prefill instances must be in [1, {most}] for {settings.gpus} GPUs")
    return ([settings.prefill_instances] if settings.prefill_instances else list(range(1, most + 1))), most


def _prefixed(note: Callable[[str], None], prefill: int, most: int) -> Callable[[str], None]:
    return lambda label: note(f"{prefill} of {most} prefill: {label}")


def _given_scale(trace: Trace, settings: CompareSettings) -> float:
    """The rate scale of ``--rate``: 1 for the trace's own rate, else R / the trace's mean rate."""
    return 1.0 if settings.rate == "native" or settings.rate is None else settings.rate / trace.requests_per_second


def _run(name: str, cluster: ClusterConfig, settings: CompareSettings, window: list[TraceRequest],
         static_mhz: dict[Phase, int] | None = None) -> RunResult:
    setup = policy_run_setup(name, cluster, settings.slo, settings.bounds, static_mhz)
    return simulate(window, setup.cluster, setup.control)


def choose_static_best(cluster: ClusterConfig, settings: CompareSettings, window: list[TraceRequest],
                       name: str = "static-best",
                       runner: Callable[[dict[Phase, int]], RunResult] | None = None) -> dict[Phase, int]:
    """Per phase, the lowest-energy fixed clock whose own latency meets the SLO percentile.

    Sweeps each phase's clock with the other phase at the top clock (so a slow prefill does not
    lengthen the run and charge decode for idling); prefill is judged on TTFT, decode on TPOT.
    An aggregated instance has one clock for both phases: the sweep is of that clock, judged on
    the SLO and the whole energy, and both phases get it.
    """
    allowed = allowed_clocks_mhz(cluster.profile.supported_sm_clocks_mhz, settings.bounds)
    levels = levels_mhz(allowed, STATIC_BEST_LEVELS)
    top = allowed[-1]
    slo = settings.slo
    run = runner or (lambda clocks: _run(name, cluster, settings, window, clocks))
    if cluster.topology == "aggregated":
        best_j, best_mhz = float("inf"), top
        for mhz in levels:
            summary = summarise(run({"prefill": mhz, "decode": mhz}), slo)
            if meets_slo(summary, slo) and summary.total_j < best_j:
                best_j, best_mhz = summary.total_j, mhz
        return {"prefill": best_mhz, "decode": best_mhz}
    chosen: dict[Phase, int] = {}
    for phase in ("prefill", "decode"):
        other: Phase = "decode" if phase == "prefill" else "prefill"
        best_j, best_mhz = float("inf"), top
        for mhz in levels:
            summary = summarise(run({phase: mhz, other: top}), slo)
            latency_ms, target_ms = ((summary.ttft_ms_at_percentile, slo.ttft_ms) if phase == "prefill"
                                     else (summary.tpot_ms_at_percentile, slo.tpot_ms))
            energy_j = summary.prefill.total_j if phase == "prefill" else summary.decode.total_j
            if summary.finished == summary.requests and latency_ms <= target_ms and energy_j < best_j:
                best_j, best_mhz = energy_j, mhz
        chosen[phase] = best_mhz
    return chosen


def _resolve_auto_slo(settings: CompareSettings, trace: Trace, profile: GpuProfile, start_s: float,
                      note: Callable[[str], None]) -> tuple[CompareSettings, str | None]:
    """``auto`` targets: 20 % over what static-max reaches at f_max, on the replayed window when a
    rate is given, else on the capacity window's requests served alone (the cluster's floor)."""
    if not (settings.auto_ttft or settings.auto_tpot):
        return settings, None
    if settings.topology == "aggregated":
        cluster = _aggregated_cluster(settings, profile)
    else:
        prefill_profile = _prefill_profile(settings, profile)
        candidates, _ = _split_candidates(settings, profile, prefill_profile)
        cluster = _cluster(settings, profile, prefill_profile, candidates[0])  # alone, any split serves alike
    if settings.rate is not None:
        note("auto SLO: static-max at the replayed rate")
        requests = scaled_window(trace, _given_scale(trace, settings), settings.duration_s, start_s)
        latencies = feasibility.at_fmax(requests, cluster, settings.slo, settings.bounds)
        source = f"static-max at f_max on the replayed window ({len(requests)} requests)"
    else:
        note("auto SLO: each request alone at f_max")
        requests = _floor_requests(trace, settings, start_s)
        latencies = feasibility.alone(requests, cluster, settings.slo, settings.bounds)
        source = f"static-max at f_max, each of {len(requests)} requests alone (the cluster's floor)"
    slo = settings.slo
    if settings.auto_ttft:
        slo = replace(slo, ttft_ms=feasibility.auto_ms(latencies.ttft_ms_at_percentile))
    if settings.auto_tpot and not math.isnan(latencies.tpot_ms_at_percentile):
        slo = replace(slo, tpot_ms=feasibility.auto_ms(latencies.tpot_ms_at_percentile))
    return replace(settings, slo=slo), source


def _floor_requests(trace: Trace, settings: CompareSettings, start_s: float) -> list[TraceRequest]:
    """The trace's own requests a capacity window holds, at its own rate (the floor ignores arrivals)."""
    return scaled_window(trace, 1.0, span_holding(trace, window_requests(settings.slo.percentile), start_s), start_s)


@dataclass(frozen=True, slots=True)
class _Setup:
    settings: CompareSettings
    """With an ``auto`` SLO resolved."""
    auto_from: str | None
    profile: GpuProfile
    trace: Trace
    start_s: float
    cluster: ClusterConfig
    capacity: Capacity | None
    split_capacities: dict[int, float]


def _setup(settings: CompareSettings, cache: CapacityCache,
           note: Callable[[str], None] = lambda label: None) -> _Setup:
    """The checked inputs, the window's start, the resolved SLO and the cluster with its capacity."""
    profile = _capped(_profile("profile", settings.profile), settings, "profile")
    trace = load_trace(settings.trace)
    _check_inputs(settings, trace, profile, _prefill_profile(settings, profile))
    start_s = _window_start(trace, settings.seed)
    settings, auto_from = _resolve_auto_slo(settings, trace, profile, start_s, note)
    cluster, capacity, split_capacities = choose_split(trace, settings, profile, start_s, cache, note)
    return _Setup(settings, auto_from, profile, trace, start_s, cluster, capacity, split_capacities)


def capacity_of(settings: CompareSettings, cache: CapacityCache) -> Capacity | None:
    """The static-max capacity of the cluster ``settings`` describe (one topology), cached;
    None when no rate meets the SLO."""
    return _setup(settings, cache).capacity


def compare(settings: CompareSettings, clock: Callable[[], float] = time.perf_counter,
            progress: Progress = quiet, *, rate_scale: float | None = None,
            cache: CapacityCache | None = None) -> Comparison:
    """One topology's comparison (``twin.topology`` runs both). ``rate_scale``: replay at this
    multiple of the trace's rate instead of ``load`` x capacity (or ``settings.rate``); ``cache``:
    a capacity cache to share."""
    if settings.topology not in TOPOLOGIES:
        raise SettingError("topology", "compare runs one topology; both: joulescale.twin.topology.compare_topologies")
    started = clock()
    cache = cache if cache is not None else CapacityCache(settings.cache_dir)
    runs_total = 1 + sum(1 for name in settings.policies if name != ORACLE)
    done = 0

    def note(label: str) -> None:
        progress(label, done, runs_total)

    setup = _setup(settings, cache, note)
    settings, auto_from, profile, trace, start_s = (setup.settings, setup.auto_from, setup.profile, setup.trace,
                                                    setup.start_s)
    cluster, capacity, split_capacities = setup.cluster, setup.capacity, setup.split_capacities
    done += 1
    explanation = None
    if capacity is None:
        note("no rate meets the SLO: measuring why")
        explanation = feasibility.explain(_floor_requests(trace, settings, start_s), cluster, settings.slo,
                                          settings.bounds)
        if settings.rate is None and rate_scale is None:
            raise NoFeasibleRateError(explanation)
    if rate_scale is None:
        rate_scale = _given_scale(trace, settings) if settings.rate is not None or capacity is None \
            else capacity.rate_scale * settings.load
    window = scaled_window(trace, rate_scale, settings.duration_s, start_s)
    if not window:  # a quiet stretch of a bursty trace: there is nothing to measure
        raise SettingError("duration_s", f"the {settings.duration_s:g} s window from {start_s:.1f} s of trace "
                                         f"{trace.name} holds no request at "
                                         + (f"load {settings.load:g}" if settings.rate is None and capacity else
                                            f"{rate_scale * trace.requests_per_second:.3g} req/s")
                                         + "; lengthen the duration or pick another seed")
    runs: dict[str, RunResult] = {}
    static_best: dict[Phase, int] = {}
    for name in settings.policies:
        if name == ORACLE:
            continue
        note(f"{name}: replaying {len(window)} requests")
        if twin_variant(name)[0].swept_clocks:
            static_best = choose_static_best(cluster, settings, window, name)
            runs[name] = _run(name, cluster, settings, window, static_best)
        else:
            runs[name] = _run(name, cluster, settings, window)
        done += 1
    note("done")
    horizon_s = max((r.end_s for r in runs.values()), default=0.0)
    summaries = {name: summarise(result, settings.slo, horizon_s) for name, result in runs.items()}
    oracle = None
    if ORACLE in settings.policies and runs and cluster.topology == "disaggregated":  # P/D steps only
        allowed = allowed_clocks_mhz(profile.supported_sm_clocks_mhz, settings.bounds)
        oracle = oracle_bound(runs, allowed, horizon_s)
    return Comparison(settings, trace, cluster, capacity, rate_scale, window, summaries, runs,
                      static_best, oracle, start_s, clock() - started, split_capacities, explanation, auto_from)
