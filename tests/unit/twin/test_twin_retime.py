"""A clock that settles inside a running iteration retimes it (gpu.py, simulator.py)."""

from __future__ import annotations

import pytest

from joulescale.profiles import physics
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.prefill import PrefillInstance
from joulescale.twin.request import SimRequest
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import load_trace, scaled_window

from .helpers import alternating_control, profile, small_cluster

SETTLE_S = 0.05
TOKENS = 6000


def _latency_s(mhz: int) -> float:
    return physics.prefill_latency_from_sums_s(profile(), TOKENS, TOKENS**2, mhz)


def _raised_mid_batch(request_at_s: float) -> tuple[PrefillInstance, float]:
    """A batch started at 990 MHz, with 1980 MHz asked for at ``request_at_s``; returns the
    instance and the duration planned when the batch started."""
    inst = PrefillInstance(0, SimGpuGroup(profile(), "prefill", 990, SETTLE_S), 8192)
    inst.enqueue(SimRequest(1, 0.0, TOKENS, 10), 0.0)
    assert inst.start_step(0.0)
    planned_s = inst.run_step(0.0)
    inst.gpu.request(request_at_s, 1980)
    return inst, planned_s


def test_a_clock_raised_mid_iteration_runs_the_work_left_at_the_new_clock() -> None:
    slow_s, fast_s = _latency_s(990), _latency_s(1980)
    switch_s = 0.1 + SETTLE_S
    assert switch_s < fast_s < slow_s  # the change lands inside the batch
    inst, planned_s = _raised_mid_batch(0.1)
    expected_s = switch_s + (1.0 - switch_s / slow_s) * fast_s
    assert planned_s == slow_s
    assert inst.gpu.end_s == pytest.approx(expected_s, rel=1e-12)
    assert inst.gpu.end_s < planned_s
    assert inst.gpu.retimes == 1
    inst.gpu.settle(switch_s)
    assert inst.gpu.clock_trace[-1] == (switch_s, 1980)
    inst.finish_step(inst.gpu.end_s)
    assert inst.counters.last_iteration_s == pytest.approx(expected_s, rel=1e-12)


def test_energy_is_booked_at_the_old_clock_before_the_settle_and_the_new_one_after() -> None:
    p = profile()
    inst, _ = _raised_mid_batch(0.1)
    gpu = inst.gpu
    head_s = 0.1 + SETTLE_S
    tail_s = gpu.end_s - head_s
    assert gpu.time_at_clock_s[990] == pytest.approx(head_s, rel=1e-12)
    assert gpu.time_at_clock_s[1980] == pytest.approx(tail_s, rel=1e-12)
    assert gpu.busy_s == pytest.approx(gpu.end_s, rel=1e-12)
    expected_j = p.tensor_parallel_size * (physics.busy_power_watts(p, "prefill", 990, 1) * head_s
                                           + physics.busy_power_watts(p, "prefill", 1980, 1) * tail_s)
    assert gpu.busy_energy_j == pytest.approx(expected_j, rel=1e-12)


def test_cancelling_a_clock_before_it_settles_leaves_the_iteration_at_the_old_clock() -> None:
    p = profile()
    gpu = SimGpuGroup(p, "prefill", 1980, SETTLE_S)
    gpu.request(0.0, 990)
    spanning_s = gpu.run(0.0, _latency_s, 1)
    assert spanning_s > _latency_s(1980)  # planned: 50 ms at 1980 MHz, the rest at 990 MHz
    gpu.request(0.02, 1980)
    assert gpu.end_s == pytest.approx(_latency_s(1980), rel=1e-12)
    assert gpu.time_at_clock_s[990] == pytest.approx(0.0, abs=1e-12)
    assert gpu.busy_energy_j == pytest.approx(
        p.tensor_parallel_size * physics.busy_power_watts(p, "prefill", 1980, 1) * _latency_s(1980), rel=1e-12)


def test_a_clock_that_settles_after_the_iteration_does_not_move_it() -> None:
    gpu = SimGpuGroup(profile(), "prefill", 1980, SETTLE_S)
    duration_s = gpu.run(0.0, _latency_s, 1)
    gpu.request(duration_s - SETTLE_S / 2, 990)
    assert (gpu.end_s, gpu.retimes, gpu.busy_s) == (duration_s, 0, duration_s)


def test_retimed_iterations_end_once_at_their_moved_end_and_conserve_work() -> None:
    window = scaled_window(load_trace("azure-conv"), 2.0, 30.0)
    cluster = small_cluster(1, 1, scrape_period_s=0.03, decode_max_running=64)
    result = simulate(window, cluster, alternating_control(990, 1980))
    again = simulate(window, cluster, alternating_control(990, 1980))
    prefill, decode = result.prefill[0], result.decode[0]
    assert prefill.gpu.retimes > 0
    assert decode.gpu.retimes > 0
    assert all(r.finish_s >= r.first_token_s >= r.prefill_done_s >= r.arrival_s for r in result.requests)
    assert decode.counters.generation_tokens == sum(r.output_tokens - 1 for r in window)
    # a stale end event would end an iteration a second time and count a step with no work
    assert prefill.counters.iterations == len(prefill.batch_log)
    assert decode.counters.iterations == len(decode.iteration_log)
    # each step ended once, when its (retimed) GPU time ran out: the steps' durations add up to
    # the GPU's busy time (chunked prefill: a request's prefill may span steps, so the wall time
    # of a request's prefill no longer names one step)
    assert prefill.counters.busy_s == pytest.approx(prefill.gpu.busy_s, rel=1e-9)
    assert decode.counters.busy_s == pytest.approx(decode.gpu.busy_s, rel=1e-9)
    assert [r.finish_s for r in again.requests] == [r.finish_s for r in result.requests]
    assert [g.busy_energy_j for g in again.gpus] == [g.busy_energy_j for g in result.gpus]
