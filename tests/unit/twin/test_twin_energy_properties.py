"""Properties the twin's energy figures rest on, checked on whole runs through ``simulate``.

Energy is the integral of power (busy at the clock in force, idle otherwise); a slower clock
never makes work finish sooner; more work never costs less at a fixed clock; the same inputs
give the same run. These hold whatever the engine model underneath, so they are tested only
through ``simulate`` and ``summarise``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from joulescale.control.policy import Slo
from joulescale.profiles import physics
from joulescale.twin.metrics import summarise
from joulescale.twin.simulator import RunResult, simulate
from joulescale.twin.traces import TraceRequest, load_trace, scaled_window, synthetic_trace

from .helpers import alternating_control, fixed_control, profile, small_cluster

SLO = Slo(600.0, 100.0, 99)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLOCKS = profile().supported_sm_clocks_mhz


def _power_integral_j(result: RunResult) -> list[float]:
    """Per instance: TP x busy power x time, summed over the clocks and batches its GPUs ran at."""
    out = []
    for gpu in result.gpus:
        tp = gpu.profile.tensor_parallel_size
        out.append(sum(tp * physics.busy_power_watts(gpu.profile, gpu.phase, mhz, batch) * seconds
                       for (mhz, batch), seconds in gpu.time_at_clock_and_batch_s.items()))
    return out


def _excess_j(result: RunResult, phase: str) -> float:
    """Busy energy above idle power of a phase's instances: TP x (P(f, B) - P_idle) x time."""
    total = 0.0
    for instance in getattr(result, phase):
        gpu = instance.gpu
        p = gpu.profile
        total += sum(p.tensor_parallel_size * (physics.busy_power_watts(p, gpu.phase, mhz, batch) - p.idle_power_watts)
                     * seconds for (mhz, batch), seconds in gpu.time_at_clock_and_batch_s.items())
    return total


@pytest.mark.parametrize("control", [fixed_control(1980, 1980), fixed_control(1200, 900),
                                     alternating_control(705, 1980)], ids=["top", "low", "alternating"])
def test_busy_energy_is_the_integral_of_power_over_the_time_at_each_clock(control: object) -> None:
    """Retimed iterations book and unbook energy; whatever the clock changes, the books balance."""
    window = scaled_window(load_trace("azure-conv"), 2.0, 15.0)
    result = simulate(window, small_cluster(2, 1), control)  # type: ignore[arg-type]
    for gpu, integral in zip(result.gpus, _power_integral_j(result), strict=True):
        assert gpu.busy_energy_j == pytest.approx(integral, rel=1e-9)
        assert sum(gpu.time_at_clock_s.values()) == pytest.approx(gpu.busy_s, rel=1e-9)
        assert all(seconds >= -1e-9 for seconds in gpu.time_at_clock_s.values())
        assert 0.0 < gpu.busy_s <= result.end_s + 1e-9  # an instance is never busy longer than the run


def test_phase_energy_is_busy_plus_idle_power_for_the_rest_of_the_horizon() -> None:
    window = scaled_window(load_trace("azure-code"), 1.5, 15.0)
    result = simulate(window, small_cluster(2, 1), fixed_control(1410, 1110))
    p = profile()
    idle_w = p.tensor_parallel_size * p.idle_power_watts
    for horizon in (None, result.end_s + 10.0):
        summary = summarise(result, SLO, horizon)
        h = summary.duration_s
        assert h == (result.end_s if horizon is None else horizon)
        for phase, instances in (("prefill", result.prefill), ("decode", result.decode)):
            energy = summary.prefill if phase == "prefill" else summary.decode
            assert energy.busy_j == pytest.approx(sum(i.gpu.busy_energy_j for i in instances))
            assert energy.idle_j == pytest.approx(sum(idle_w * (h - i.gpu.busy_s) for i in instances))
            assert energy.total_j == pytest.approx(energy.busy_j + energy.idle_j)
    longer = summarise(result, SLO, result.end_s + 10.0)
    shorter = summarise(result, SLO)
    gpus = len(result.gpus)
    assert longer.total_j - shorter.total_j == pytest.approx(gpus * idle_w * 10.0)
    # A horizon before the run's end is no horizon: energy is measured at least to the end.
    assert summarise(result, SLO, result.end_s / 2).total_j == pytest.approx(shorter.total_j)


@FAST
@given(prompt=st.integers(1, 20_000), output=st.integers(2, 300),
       clocks=st.lists(st.sampled_from(CLOCKS), min_size=2, max_size=2, unique=True))
def test_a_slower_clock_never_makes_a_request_faster(prompt: int, output: int, clocks: list[int]) -> None:
    """One request after the clocks have settled: prefill at the lower clock takes at least as
    long (TTFT), and decode at the lower clock at least as long per token (TPOT)."""
    low, high = sorted(clocks)
    window = [TraceRequest(1.0, prompt, output)]
    cluster = small_cluster(1, 1)
    slow = simulate(window, cluster, fixed_control(low, low)).requests[0]
    fast = simulate(window, cluster, fixed_control(high, high)).requests[0]
    assert slow.ttft_s >= fast.ttft_s > 0
    assert slow.tpot_s >= fast.tpot_s > 0
    if prompt <= cluster.prefill_token_budget:  # alone on a settled clock: the physics' latency
        assert slow.prefill_done_s - slow.arrival_s == pytest.approx(
            physics.prefill_latency_s(profile(), [prompt], low), rel=1e-9)


@FAST
@given(seed=st.integers(0, 2**32), scale=st.floats(0.5, 3.0))
def test_a_run_is_a_function_of_its_inputs(seed: int, scale: float) -> None:
    trace = synthetic_trace(4.0, 8.0, 900, 60, seed, arrivals="gamma")
    window = scaled_window(trace, scale, 6.0)
    runs = [simulate(window, small_cluster(2, 1), alternating_control(900, 1980)) for _ in range(2)]
    a, b = ([(r.first_token_s, r.finish_s, r.preemptions) for r in run.requests] for run in runs)
    assert a == b
    assert [g.busy_energy_j for g in runs[0].gpus] == [g.busy_energy_j for g in runs[1].gpus]
    assert [g.clock_trace for g in runs[0].gpus] == [g.clock_trace for g in runs[1].gpus]
    assert runs[0].end_s == runs[1].end_s


_REQUEST = st.tuples(st.floats(0.0, 5.0), st.integers(16, 6000), st.integers(2, 200))


def _settled(rows: list[tuple[float, int, int]], after_s: float = 1.0) -> list[TraceRequest]:
    """Requests arriving from ``after_s`` on, when a fixed clock has settled (the GPUs start at the top one)."""
    return [TraceRequest(after_s + t, p, o) for t, p, o in sorted(rows)]


@FAST
@given(base=st.lists(_REQUEST, min_size=1, max_size=12), extra=st.lists(_REQUEST, min_size=1, max_size=6),
       cut=st.floats(0.0, 6.0), mhz=st.sampled_from((900, 1410, 1980)))
def test_later_arrivals_never_change_what_happened_before_them(
        base: list[tuple[float, int, int]], extra: list[tuple[float, int, int]], cut: float, mhz: int) -> None:
    """Causality: requests added after ``cut`` leave every request finished by then untouched."""
    early = _settled(base)
    late = [TraceRequest(1.0 + cut + t, p, o) for t, p, o in sorted(extra)]
    cluster = small_cluster(2, 1)
    alone = simulate(early, cluster, fixed_control(mhz, mhz))
    joined = simulate(sorted(early + late, key=lambda r: r.arrival_s), cluster, fixed_control(mhz, mhz))
    cut_s = 1.0 + cut
    before = {(r.arrival_s, r.prompt_tokens, r.output_tokens): (r.first_token_s, r.finish_s)
              for r in alone.requests if r.finish_s <= cut_s}
    after = {(r.arrival_s, r.prompt_tokens, r.output_tokens): (r.first_token_s, r.finish_s)
             for r in joined.requests if r.finish_s <= cut_s and r.arrival_s < cut_s}
    assert before == {key: after[key] for key in before}


@FAST
@given(base=st.lists(_REQUEST, min_size=1, max_size=10), extra=st.lists(_REQUEST, min_size=1, max_size=5),
       mhz=st.sampled_from((900, 1410, 1980)))
def test_work_added_after_a_run_drains_costs_its_busy_energy_on_top(
        base: list[tuple[float, int, int]], extra: list[tuple[float, int, int]], mhz: int) -> None:
    """More load at a fixed clock costs more: over a common horizon the extra energy is exactly the
    extra busy time x (busy - idle power) at each step's batch, which is positive at every clock.

    Not claimed: that any superset of a window costs more. Adding a request can re-align prefill
    batches so that decode runs fewer, fuller iterations; continuous batching really does this.
    """
    cluster = small_cluster(1, 1)
    light = simulate(_settled(base), cluster, fixed_control(mhz, mhz))
    heavy = simulate(_settled(base) + _settled(extra, light.end_s + 1.0), cluster, fixed_control(mhz, mhz))
    horizon = heavy.end_s
    light_j, heavy_j = summarise(light, SLO, horizon), summarise(heavy, SLO, horizon)
    assert heavy_j.total_j > light_j.total_j
    for phase in ("prefill", "decode"):
        extra_busy_s = sum(h.gpu.busy_s - g.gpu.busy_s for h, g in zip(getattr(heavy, phase), getattr(light, phase),
                                                                       strict=True))
        extra_j = getattr(heavy_j, phase).total_j - getattr(light_j, phase).total_j
        assert extra_busy_s > 0
        assert extra_j > 0
        assert extra_j == pytest.approx(_excess_j(heavy, phase) - _excess_j(light, phase), rel=1e-6)


def test_a_faster_arrival_rate_of_one_trace_costs_more_energy_at_a_fixed_clock() -> None:
    """The trace-level form: the same 20 s of azure-conv replayed 1x, 2x and 3x faster (more
    requests in the same window) costs more over the same horizon, every step of the way."""
    trace = load_trace("azure-conv")
    runs = [simulate(_shifted(scaled_window(trace, scale, 20.0)), small_cluster(2, 1), fixed_control(1410, 1110))
            for scale in (1.0, 2.0, 3.0)]
    horizon = max(r.end_s for r in runs)
    energies = [summarise(r, SLO, horizon).total_j for r in runs]
    assert energies == sorted(energies)
    assert len(set(energies)) == 3


def _shifted(window: list[TraceRequest]) -> list[TraceRequest]:
    return [TraceRequest(r.arrival_s + 1.0, r.prompt_tokens, r.output_tokens) for r in window]
