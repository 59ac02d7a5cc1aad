"""Policies side by side on one trace window: the engine of ``joulescale twin compare``.

Steps: load the trace; pick the P/D split (the one with the highest static-max capacity unless
given); find the capacity (cached); replay the window at ``load`` x capacity under each policy;
choose static-best's clocks by a sweep; compute the oracle bound from the realised runs.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from joulescale.control.clocks import NoAllowedClockError, allowed_clocks_mhz, levels_mhz
from joulescale.control.observation import Phase
from joulescale.profiles import ProfileError, profile_by_name_or_path
from joulescale.profiles.model import GpuProfile
from joulescale.twin import limits
from joulescale.twin.capacity import Capacity, CapacityCache, find_capacity_scale
from joulescale.twin.cluster import ClusterConfig
from joulescale.twin.limits import SettingError
from joulescale.twin.metrics import RunSummary, meets_slo, summarise
from joulescale.twin.oracle import OracleBound, oracle_bound
from joulescale.twin.policies import policy_run_setup
from joulescale.twin.settings import ORACLE, CompareSettings
from joulescale.twin.simulator import AbortRule, RunResult, simulate
from joulescale.twin.traces import Trace, TraceRequest, check_replayable, load_trace, scaled_window
from joulescale.twin.views import ViewName

STATIC_BEST_LEVELS = 8
"""Clocks swept per phase for static-best (evenly over the allowed range, the top one included)."""


@dataclass(slots=True)
class Comparison:
    settings: CompareSettings
    trace: Trace
    cluster: ClusterConfig
    capacity: Capacity
    rate_scale: float
    requests: list[TraceRequest]
    summaries: dict[str, RunSummary]
    runs: dict[str, RunResult]
    static_best_mhz: dict[Phase, int]
    oracle: OracleBound | None
    window_start_s: float
    wall_s: float
    split_capacities: dict[int, float]

    @property
    def requests_per_second(self) -> float:
        """The offered rate: the trace's mean rate x the rate scale (= load x capacity)."""
        return self.rate_scale * self.trace.requests_per_second

    @property
    def window_requests_per_second(self) -> float:
        """What the replayed window actually holds (bursty traces differ from their mean)."""
        return len(self.requests) / self.settings.duration_s


def _window_start(trace: Trace, seed: int) -> float:
    if seed == 0:
        return 0.0
    return random.Random(seed).uniform(0.0, trace.duration_s)


def _capacity(trace: Trace, cluster: ClusterConfig, settings: CompareSettings, start_s: float,
              cache: CapacityCache) -> Capacity:
    key = CapacityCache.key({
        "trace": trace.digest, "duration_s": settings.duration_s, "start_s": start_s,
        "cluster": replace(cluster, view="metrics").describe(), "slo": [settings.slo.ttft_ms, settings.slo.tpot_ms, settings.slo.percentile],
        "bounds": None if settings.bounds is None else [settings.bounds.min_mhz, settings.bounds.max_mhz],
        "power_limit_watts": [cluster.profile.power_limit_watts, cluster.profile_of("prefill").power_limit_watts],
        "settle_s": [cluster.settle_s("prefill"), cluster.settle_s("decode")],
        # A profile file may reuse a shipped profile's name with other physics: key on the content.
        "physics": [_digest(cluster.profile_of("prefill")), _digest(cluster.profile)],
        "version": 3,  # 3: chunked prefill in the core engine model
    })
    cached = cache.get(key)
    if cached is not None:
        return cached
    setup = policy_run_setup("static-max", replace(cluster, view="metrics"), settings.slo, settings.bounds)

    def meets(scale: float) -> bool:
        window = scaled_window(trace, scale, settings.duration_s, start_s)
        allowed = int((len(window) - 1) * (1.0 - settings.slo.percentile / 100.0)) + 1
        rule = AbortRule(settings.slo.ttft_ms / 1000.0, settings.slo.tpot_ms / 1000.0, allowed)
        result = simulate(window, setup.cluster, setup.control, rule)
        return not result.aborted and meets_slo(summarise(result, settings.slo), settings.slo)

    scale, probes = find_capacity_scale(meets)
    capacity = Capacity(scale, scale * trace.requests_per_second, probes)
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


def _capped(profile: GpuProfile, settings: CompareSettings) -> GpuProfile:
    """The profile under ``power_limit_watts``, which must cover what the GPU draws at any clock
    (the profile's own rule: idle power and each phase's floor stay under the cap)."""
    watts = settings.power_limit_watts
    if watts is None:
        return profile
    needed = max(profile.idle_power_watts, profile.prefill.power.floor_watts, profile.decode.power.floor_watts)
    if watts < needed:
        raise SettingError("power_limit_watts", f"power limit {watts:g} W is below the {needed:g} W that profile "
                                                f"{profile.name} draws at its lowest clock")
    return profile.model_copy(update={"power_limit_watts": watts})


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
                 cache: CapacityCache) -> tuple[ClusterConfig, Capacity, dict[int, float]]:
    """The given split, or the one whose static-max capacity is highest (ties: fewer prefill)."""
    prefill_profile = _capped(_profile("prefill_profile", settings.prefill_profile), settings) \
        if settings.prefill_profile else profile
    tp_prefill, tp_decode = prefill_profile.tensor_parallel_size, profile.tensor_parallel_size
    most = (settings.gpus - tp_decode) // tp_prefill
    if most < 1:
        raise SettingError("gpus", f"{settings.gpus} GPUs cannot hold one TP{tp_prefill} prefill and one "
                                   f"TP{tp_decode} decode instance; a P/D cluster needs at least 2 instances")
    candidates = [settings.prefill_instances] if settings.prefill_instances else list(range(1, most + 1))
    if settings.prefill_instances is not None and not 1 <= settings.prefill_instances <= most:
        raise SettingError("prefill_instances", f"prefill instances must be in [1, {most}] for {settings.gpus} GPUs")
    limits.check_work(settings.duration_s, settings.gpus, len(candidates))
    found: dict[int, tuple[ClusterConfig, Capacity]] = {}
    for prefill in candidates:
        cluster = _cluster(settings, profile, prefill_profile, prefill)
        found[prefill] = (cluster, _capacity(trace, cluster, settings, start_s, cache))
    best = max(found, key=lambda p: (found[p][1].requests_per_second, -p))
    return found[best][0], found[best][1], {p: c.requests_per_second for p, (_, c) in found.items()}


def _run(name: str, cluster: ClusterConfig, settings: CompareSettings, window: list[TraceRequest],
         static_mhz: dict[Phase, int] | None = None) -> RunResult:
    setup = policy_run_setup(name, cluster, settings.slo, settings.bounds, static_mhz)
    return simulate(window, setup.cluster, setup.control)


def choose_static_best(cluster: ClusterConfig, settings: CompareSettings, window: list[TraceRequest],
                       runner: Callable[[dict[Phase, int]], RunResult] | None = None) -> dict[Phase, int]:
    """Per phase, the lowest-energy fixed clock whose own latency meets the SLO percentile.

    Sweeps each phase's clock with the other phase at the top clock (so a slow prefill does not
    lengthen the run and charge decode for idling); prefill is judged on TTFT, decode on TPOT.
    """
    allowed = allowed_clocks_mhz(cluster.profile.supported_sm_clocks_mhz, settings.bounds)
    levels = levels_mhz(allowed, STATIC_BEST_LEVELS)
    top = allowed[-1]
    slo = settings.slo
    run = runner or (lambda clocks: _run("static-best", cluster, settings, window, clocks))
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


def compare(settings: CompareSettings, clock: Callable[[], float] = time.perf_counter) -> Comparison:
    started = clock()
    profile = _capped(_profile("profile", settings.profile), settings)
    trace = load_trace(settings.trace)
    prefill_profile = _capped(_profile("prefill_profile", settings.prefill_profile), settings) \
        if settings.prefill_profile else profile
    _check_inputs(settings, trace, profile, prefill_profile)
    start_s = _window_start(trace, settings.seed)
    cache = CapacityCache(settings.cache_dir)
    cluster, capacity, split_capacities = choose_split(trace, settings, profile, start_s, cache)
    rate_scale = capacity.rate_scale * settings.load
    window = scaled_window(trace, rate_scale, settings.duration_s, start_s)
    runs: dict[str, RunResult] = {}
    static_best: dict[Phase, int] = {}
    for name in settings.policies:
        if name == ORACLE:
            continue
        if name == "static-best":
            static_best = choose_static_best(cluster, settings, window)
            runs[name] = _run(name, cluster, settings, window, static_best)
        else:
            runs[name] = _run(name, cluster, settings, window)
    horizon_s = max((r.end_s for r in runs.values()), default=0.0)
    summaries = {name: summarise(result, settings.slo, horizon_s) for name, result in runs.items()}
    oracle = None
    if ORACLE in settings.policies and runs:
        allowed = allowed_clocks_mhz(profile.supported_sm_clocks_mhz, settings.bounds)
        oracle = oracle_bound(runs, allowed, horizon_s)
    return Comparison(settings, trace, cluster, capacity, rate_scale, window, summaries, runs,
                      static_best, oracle, start_s, clock() - started, split_capacities)


def with_view(settings: CompareSettings, view: ViewName) -> CompareSettings:
    return replace(settings, view=view)
