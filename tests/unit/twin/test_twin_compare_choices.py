"""The choices ``compare`` makes before measuring: static-best's clocks, the capacity it loads
the cluster against (cached), and a seeded window; plus the workloads it may be fed."""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.control.clocks import allowed_clocks_mhz, levels_mhz
from joulescale.control.policy import ClockBounds, Slo
from joulescale.engines.observation import Phase
from joulescale.profiles import physics
from joulescale.twin.capacity import Capacity, CapacityCache, find_capacity_scale, window_requests
from joulescale.twin.compare import (
    STATIC_BEST_LEVELS,
    _window_start,
    choose_split,
    choose_static_best,
    compare,
)
from joulescale.twin.kv_transfer import kv_medium
from joulescale.twin.limits import SettingError
from joulescale.twin.metrics import meets_slo, summarise
from joulescale.twin.report import to_json
from joulescale.twin.settings import CompareSettings
from joulescale.twin.simulator import RunResult, simulate
from joulescale.twin.trace_rows import tokens
from joulescale.twin.traces import TraceRequest, load_trace, scaled_window, span_holding, synthetic_trace

from .helpers import fixed_control, profile, small_cluster


@pytest.mark.parametrize("slo", [Slo(600.0, 100.0, 99), Slo(250.0, 30.0, 90)], ids=["default", "tight"])
def test_static_best_is_the_cheapest_swept_clock_whose_latency_meets_its_target(slo: Slo) -> None:
    """Per phase, with the other phase at the top clock: every cheaper level misses the phase's
    latency target (prefill TTFT, decode TPOT), and the chosen one meets it or is the top."""
    window = scaled_window(load_trace("azure-conv"), 2.0, 12.0)
    cluster = small_cluster(2, 1)
    settings_ = CompareSettings(slo=slo)
    runs: dict[tuple[int, int], RunResult] = {}

    def runner(clocks: dict[Phase, int]) -> RunResult:
        key = (clocks["prefill"], clocks["decode"])
        runs[key] = simulate(window, cluster, fixed_control(*key))
        return runs[key]

    chosen = choose_static_best(cluster, settings_, window, runner=runner)
    allowed = allowed_clocks_mhz(profile().supported_sm_clocks_mhz, None)
    levels = levels_mhz(allowed, STATIC_BEST_LEVELS)
    top = allowed[-1]
    assert len(runs) == 2 * len(levels) - 1 or len(runs) == 2 * len(levels)  # (top, top) may be shared
    for phase in ("prefill", "decode"):
        def key(mhz: int, phase: str = phase) -> tuple[int, int]:
            return (mhz, top) if phase == "prefill" else (top, mhz)

        def judged(mhz: int, phase: str = phase) -> tuple[bool, float]:
            s = summarise(runs[key(mhz)], slo)
            latency, target = (s.ttft_ms_at_percentile, slo.ttft_ms) if phase == "prefill" else \
                (s.tpot_ms_at_percentile, slo.tpot_ms)
            energy = s.prefill.total_j if phase == "prefill" else s.decode.total_j
            return s.finished == s.requests and latency <= target, energy

        assert chosen[phase] in levels  # type: ignore[index]
        ok, energy = judged(chosen[phase])  # type: ignore[index]
        assert ok or chosen[phase] == top  # type: ignore[index]
        for mhz in levels:
            other_ok, other_energy = judged(mhz)
            if other_energy < energy:
                assert not other_ok, (phase, mhz)


def test_a_quiet_window_is_refused_naming_the_duration_not_reported_as_an_slo_miss() -> None:
    """Found by these tests: seed 5 starts a 10 s window of azure-code in a stretch without
    requests. The capacity search read the empty window as an SLO miss, halved the rate down to
    nothing and failed with "the cluster misses the SLO even at a tiny fraction of the trace's
    rate". It now searches up to the rates where the window fills; a window still empty at the
    asked load is refused, naming the duration, instead of measured as zero requests."""
    quiet = CompareSettings(trace="azure-code", duration_s=10.0, gpus=8, prefill_instances=1, load=0.67, seed=5,
                            policies=("static-max",))
    with pytest.raises(SettingError, match=r"holds no request at load 0\.67; lengthen the duration") as caught:
        compare(quiet)
    assert caught.value.setting == "duration_s"
    # The capacity search itself never replays an empty window: each probe holds enough requests
    # for the percentile, however quiet the --duration window is.
    trace = load_trace("azure-code")
    found = choose_split(trace, quiet, profile(), _window_start(trace, quiet.seed), CapacityCache(None))
    assert found[1] is not None
    assert found[1].window_requests == window_requests(99)


def test_a_seeded_comparison_is_reproducible_and_its_capacity_is_cached_and_met(tmp_path: Path) -> None:
    """At load 1.0 static-max runs at the capacity found, so it meets the SLO (the window is long
    enough for P90, so it is the capacity's own window); a second run reads the capacity from the
    cache file and measures the same window to the same joule."""
    settings_ = CompareSettings(trace="azure-conv", duration_s=30.0, gpus=8, prefill_instances=1, load=1.0, seed=7,
                                slo=Slo(600.0, 100.0, 90), policies=("static-max",), cache_dir=tmp_path)
    first = compare(settings_)
    again = compare(settings_)
    assert not first.capacity.cached
    assert first.capacity.probes > 0
    assert again.capacity.cached
    assert again.capacity.rate_scale == first.capacity.rate_scale
    assert (tmp_path / "capacity.json").is_file()
    assert 0.0 < first.window_start_s < first.trace.duration_s
    assert again.window_start_s == first.window_start_s
    assert again.requests == first.requests
    assert again.summaries["static-max"].total_j == first.summaries["static-max"].total_j
    assert meets_slo(first.summaries["static-max"], settings_.slo)
    assert first.rate_scale == first.capacity.rate_scale
    assert first.window_requests_per_second == len(first.requests) / 30.0


def test_gamma_arrivals_have_the_asked_burstiness_and_poisson_ones_a_cv_of_one() -> None:
    for arrivals, cv in (("gamma", 2.0), ("gamma", 0.5), ("poisson", 1.0)):
        trace = synthetic_trace(50.0, 200.0, 100, 10, seed=11, arrivals=arrivals, cv=cv)  # type: ignore[arg-type]
        gaps = [b.arrival_s - a.arrival_s for a, b in zip(trace.requests, trace.requests[1:], strict=False)]
        mean = statistics.fmean(gaps)
        # ~10 000 gaps: the sample mean and CV are within a few percent of the truth for this seed
        assert mean == pytest.approx(1 / 50.0, rel=0.05), arrivals
        assert statistics.pstdev(gaps) / mean == pytest.approx(cv, rel=0.1), (arrivals, cv)
    assert synthetic_trace(5.0, 10.0, 100, 10, seed=3).requests == synthetic_trace(5.0, 10.0, 100, 10, seed=3).requests


def test_prompts_prefilled_together_send_their_kv_one_after_another() -> None:
    p = profile()
    top = p.max_sm_clock_mhz
    window = [TraceRequest(1.0, 100, 2), TraceRequest(1.01, 3000, 2), TraceRequest(1.02, 3000, 2)]
    run = simulate(window, small_cluster(1, 1), fixed_control(top, top))
    first, second, third = run.requests
    assert second.prefill_done_s == third.prefill_done_s > first.prefill_done_s  # one batch behind the first
    link = kv_medium("infiniband")
    assert third.first_token_s - second.first_token_s == pytest.approx(link.transfer_s(3000, p.kv_bytes_per_token))
    assert second.prefill_done_s - first.prefill_done_s == pytest.approx(
        physics.prefill_latency_s(p, [3000, 3000], top))


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 10_000_000), pad=st.sampled_from(("", " ", "\t")))
def test_a_token_count_reads_as_ascii_digits_or_an_integer(count: int, pad: str) -> None:
    assert tokens(f"{pad}{count}{pad}", "ContextTokens") == count
    assert tokens(count, "ContextTokens") == count
    with pytest.raises(ValueError, match="ContextTokens"):
        tokens(count + 10_000_000, "ContextTokens")
    with pytest.raises(ValueError, match="ContextTokens"):
        tokens(f"-{count}", "ContextTokens")
    with pytest.raises(ValueError, match="ContextTokens"):
        tokens(float(count), "ContextTokens")


@pytest.mark.parametrize(("trace", "percentile"), [("azure-conv", 99), ("azure-code", 90)])
def test_stopping_probes_early_never_changes_the_capacity_found(trace: str, percentile: int) -> None:
    """The search stops a probe once too many requests missed a target for the percentile to be
    met; a search that runs every probe to its end finds the very same capacity in as many probes."""
    slo = Slo(600.0, 100.0, percentile)
    found = compare(CompareSettings(trace=trace, duration_s=20.0, gpus=8, prefill_instances=1, slo=slo,
                                    policies=("static-max",)))
    top = found.cluster.profile.max_sm_clock_mhz

    def meets_in_full(scale: float) -> bool:
        span = span_holding(found.trace, window_requests(percentile), found.window_start_s)
        window = scaled_window(found.trace, scale, max(20.0, span / scale), found.window_start_s)
        result = simulate(window, found.cluster, fixed_control(top, top))
        assert not result.aborted
        return meets_slo(summarise(result, slo), slo)

    scale, probes = find_capacity_scale(meets_in_full)
    assert scale == found.capacity.rate_scale
    assert probes == found.capacity.probes
    assert found.capacity.requests_per_second == pytest.approx(scale * found.trace.requests_per_second)


def test_the_split_chosen_is_the_one_of_highest_capacity_and_a_comparison_repeats_exactly() -> None:
    settings_ = CompareSettings(trace="azure-conv", duration_s=15.0, gpus=12, policies=("static-max", "joulescale"))
    first = compare(settings_)
    assert set(first.split_capacities) == {1, 2}  # 12 GPUs of TP4: one or two prefill instances
    best = max(first.split_capacities.values())
    chosen = first.cluster.prefill_instances
    assert first.split_capacities[chosen] == best
    assert all(p > chosen for p, c in first.split_capacities.items() if c == best and p != chosen)  # ties: fewer
    assert first.cluster.decode_instances == 3 - chosen
    assert first.capacity.requests_per_second == best
    again = compare(settings_)
    first_doc, again_doc = to_json(first), to_json(again)
    first_doc.pop("wall_s")
    again_doc.pop("wall_s")
    assert first_doc == again_doc


def test_the_capacity_cache_is_reused_across_what_leaves_capacity_alone_and_not_across_what_changes_it(tmp_path: Path) -> None:
    """Not claimed: that the scrape settings, which static-max never uses, keep the cache (they
    are in the key, so a new scrape period searches the capacity again; a cost, not an error)."""
    base = CompareSettings(trace="azure-conv", duration_s=10.0, gpus=8, prefill_instances=1, policies=("static-max",),
                           cache_dir=tmp_path)
    assert not compare(base).capacity.cached
    same_capacity = [replace(base, load=0.4), replace(base, policies=("static-max", "joulescale")),
                     replace(base, view="rich")]
    for settings_ in same_capacity:
        assert compare(settings_).capacity.cached, settings_
    other_capacity = [replace(base, slo=Slo(500.0, 100.0, 99)), replace(base, kv_medium="nvlink"),
                      replace(base, power_limit_watts=500.0), replace(base, seed=3),
                      replace(base, bounds=ClockBounds(900, 1500))]
    for settings_ in other_capacity:
        assert not compare(settings_).capacity.cached, settings_


def test_two_caches_sharing_a_file_keep_each_others_entries(tmp_path: Path) -> None:
    first, second = CapacityCache(tmp_path), CapacityCache(tmp_path)
    first.put("a" * 24, Capacity(1.0, 2.0, 3))
    second.put("b" * 24, Capacity(4.0, 5.0, 6))
    fresh = CapacityCache(tmp_path)
    assert fresh.get("a" * 24) == Capacity(1.0, 2.0, 0, cached=True)
    assert fresh.get("b" * 24) == Capacity(4.0, 5.0, 0, cached=True)
