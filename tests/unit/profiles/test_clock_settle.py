"""The one clock-settle rule, and that the twin's GPU and the agent's simulated backend follow it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from joulescale.profiles import load_profile, physics
from joulescale.profiles.settle import ClockChange, plan_work, request_clock
from joulescale.twin.gpu import SimGpuGroup
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile
from joulescale_agent.gpu.simulated import SimulatedBackend

PROFILE = load_profile("h100-sxm-llama-8b-tp1")
SETTLE_S = 0.1


def test_a_request_runs_the_clock_in_force_until_it_settles() -> None:
    change = request_clock(None, 1980, 990, 1.0, SETTLE_S)
    assert change == ClockChange(1980, 990, 1.1)
    assert change.clock_at(1.0999) == 1980
    assert change.clock_at(1.1) == 990


def test_a_new_request_replaces_a_settling_one_from_the_clock_in_force() -> None:
    first = request_clock(None, 1980, 990, 1.0, SETTLE_S)
    replaced = request_clock(first, 1980, 1500, 1.05, SETTLE_S)
    assert (replaced.previous_mhz, replaced.target_mhz) == (1980, 1500)
    assert replaced.effective_at_s == pytest.approx(1.15)
    assert request_clock(first, 1980, 990, 1.05, SETTLE_S) is first  # asking again does not restart it
    cancelled = request_clock(first, 1980, 1980, 1.05, SETTLE_S)
    assert cancelled.clock_at(1.05) == cancelled.clock_at(2.0) == 1980


def test_work_switches_to_a_clock_that_settles_before_its_end() -> None:
    def latency_s(mhz: int) -> float:
        return physics.prefill_latency_s(PROFILE, [4000], mhz)

    plan = plan_work(0.0, 1.0, 1980, 990, 0.05, latency_s)
    assert plan.head_s == pytest.approx(0.05)
    done_at_switch = 0.05 / latency_s(1980)
    assert plan.tail_s == pytest.approx((1 - done_at_switch) * latency_s(990))
    assert plan.done_at(plan.end_s) == pytest.approx(1.0)
    later = plan_work(0.0, 1.0, 1980, 990, 10.0, latency_s)
    assert later.tail_s == 0.0
    assert later.end_s == pytest.approx(latency_s(1980))


def test_the_twin_gpu_and_the_simulated_backend_agree_on_the_clock_over_time(tmp_path: Path) -> None:
    now = [0.0]
    SimGpuDir.create(tmp_path, specs_from_profile(PROFILE, ["GPU-0"]))
    backend = SimulatedBackend(tmp_path, clock=lambda: now[0])
    settle_s = PROFILE.clock_settle_ms / 1000.0
    twin = SimGpuGroup(PROFILE, "decode", PROFILE.max_sm_clock_mhz, settle_s)
    requests = [
        (0.0, 990),
        (0.5 * settle_s, 1500),
        (3 * settle_s, 1980),
        (3.2 * settle_s, 990),
        (3.3 * settle_s, 990),
        (6 * settle_s, 1200),
    ]
    probes = sorted(
        {t for t, _ in requests} | {t + d * settle_s for t, _ in requests for d in (0.3, 0.99, 1.01)}
    )
    pending = list(requests)
    for t in probes:
        while pending and pending[0][0] <= t:
            at_s, mhz = pending.pop(0)
            now[0] = at_s
            twin.request(at_s, mhz)
            backend.lock_sm_clock("GPU-0", mhz, mhz)
        now[0] = t
        twin.settle(t)
        assert backend.sm_clock_mhz("GPU-0") == twin.clock_mhz, t


def test_the_twin_gpus_busy_log_books_what_its_energy_counts_through_retimes() -> None:
    """``busy_log`` (the differential test's window energy) equals the GPU's own bookkeeping,
    also when requests retime a running iteration, before and after its switch."""
    settle_s = PROFILE.clock_settle_ms / 1000.0
    gpu = SimGpuGroup(PROFILE, "prefill", PROFILE.max_sm_clock_mhz, settle_s)
    gpu.busy_log = []

    def latency_s(mhz: int) -> float:
        return physics.prefill_latency_s(PROFILE, [8000], mhz)

    duration_s = gpu.run(0.0, latency_s, 1)
    gpu.request(0.01, 990)  # settles inside the iteration: a tail at 990
    gpu.request(0.02, 1500)  # replaces it before the switch
    gpu.request(0.02 + 1.5 * settle_s, 345)  # after the switch to 1500
    assert gpu.retimes == 3
    assert gpu.end_s > duration_s
    assert sum(d for _, d, _, _ in gpu.busy_log) == pytest.approx(gpu.busy_s)
    energy_j = sum(physics.iteration_energy_j(PROFILE, "prefill", d, mhz, 1) for _, d, mhz, _ in gpu.busy_log)
    assert energy_j == pytest.approx(gpu.busy_energy_j)
    clocks = [mhz for _, _, mhz, _ in gpu.busy_log]
    assert [m for i, m in enumerate(clocks) if i == 0 or clocks[i - 1] != m] == [1980, 1500, 345]
    for (start_s, length_s, _, _), (next_s, _, _, _) in itertools.pairwise(gpu.busy_log):
        assert next_s == pytest.approx(start_s + length_s)  # one contiguous iteration
    assert gpu.busy_log[-1][0] + gpu.busy_log[-1][1] == pytest.approx(gpu.end_s)
