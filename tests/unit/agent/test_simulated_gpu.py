"""The simulated GPU: settle time, lock semantics, energy integration, permission and MIG."""

from __future__ import annotations

from pathlib import Path

import pytest

from joulescale.profiles import load_profile
from joulescale_agent import errors
from joulescale_agent.clock import ManualClock
from joulescale_agent.gpu.simstate import SimGpuDir, SimGpuMeter, SimGpuSpec, specs_from_profile
from joulescale_agent.gpu.simulated import SimulatedBackend

CLOCKS = tuple(range(345, 1981, 15))


def _spec(uuid: str = "GPU-a", **kw: bool) -> SimGpuSpec:
    return SimGpuSpec(
        uuid=uuid, name="sim", supported_sm_clocks_mhz=CLOCKS, settle_s=0.05, idle_watts=75.0, **kw
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_a_new_clock_takes_effect_only_after_the_settle_time(tmp_path: Path, clock: ManualClock) -> None:
    SimGpuDir.create(tmp_path, [_spec()])
    gpu = SimulatedBackend(tmp_path, clock)
    assert gpu.sm_clock_mhz("GPU-a") == 1980
    gpu.lock_sm_clock("GPU-a", 1005, 1005)
    clock.advance(0.049)
    assert gpu.sm_clock_mhz("GPU-a") == 1980
    clock.advance(0.002)
    assert gpu.sm_clock_mhz("GPU-a") == 1005
    gpu.reset_sm_clock("GPU-a")
    assert gpu.sm_clock_mhz("GPU-a") == 1005
    clock.advance(0.06)
    assert gpu.sm_clock_mhz("GPU-a") == 1980
    assert gpu.locked_mhz("GPU-a") is None


def test_lock_range_runs_at_the_highest_supported_clock_inside_it(tmp_path: Path, clock: ManualClock) -> None:
    SimGpuDir.create(tmp_path, [_spec()])
    gpu = SimulatedBackend(tmp_path, clock)
    gpu.lock_sm_clock("GPU-a", 1000, 1010)
    assert gpu.locked_mhz("GPU-a") == 1005
    with pytest.raises(errors.GpuError):
        gpu.lock_sm_clock("GPU-a", 1001, 1004)


def test_energy_integrates_the_power_of_the_load_the_engine_reports(
    tmp_path: Path, clock: ManualClock
) -> None:
    directory = SimGpuDir.create(tmp_path, [_spec()])
    meter = SimGpuMeter(directory, "GPU-a")
    meter.set_power(clock(), 300.0)
    clock.advance(2.0)
    meter.set_power(clock(), 75.0)
    clock.advance(4.0)
    meter.set_power(clock(), 75.0)
    gpu = SimulatedBackend(tmp_path, clock)
    assert gpu.energy_mj("GPU-a") == 300 * 2 * 1000 + 75 * 4 * 1000
    assert gpu.power_watts("GPU-a") == 75.0


def test_a_gpu_without_permission_refuses_locks_as_a_permission_error(
    tmp_path: Path, clock: ManualClock
) -> None:
    SimGpuDir.create(tmp_path, [_spec(allow_lock=False), _spec("GPU-m", mig_enabled=True)])
    gpu = SimulatedBackend(tmp_path, clock)
    with pytest.raises(errors.GpuPermissionError):
        gpu.lock_sm_clock("GPU-a", 1005, 1005)
    with pytest.raises(errors.GpuMigError):
        gpu.lock_sm_clock("GPU-m", 1005, 1005)
    with pytest.raises(errors.GpuNotFoundError):
        gpu.sm_clock_mhz("GPU-x")


def test_specs_from_a_profile_carry_its_clocks_settle_time_and_idle_power() -> None:
    profile = load_profile("h100-sxm-llama-8b-tp1")
    (spec,) = specs_from_profile(profile, ["GPU-a"])
    assert spec.supported_sm_clocks_mhz == profile.supported_sm_clocks_mhz
    assert spec.settle_s == pytest.approx(profile.clock_settle_ms / 1000)
    assert spec.idle_watts == profile.idle_power_watts
