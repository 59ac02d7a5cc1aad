"""The actuator and the state file: the rules that keep clocks safe whatever the policy says."""

from __future__ import annotations

from pathlib import Path

import pytest

from joulescale_agent import errors
from joulescale_agent.clock import ManualClock
from joulescale_agent.gpu.simstate import SimGpuDir, SimGpuSpec
from joulescale_agent.gpu.simulated import SimulatedBackend
from joulescale_agent.safety.actuator import ClockActuator
from joulescale_agent.safety.statefile import StateFile

CLOCKS = tuple(range(345, 1981, 15))


def _backend(tmp_path: Path, *, allow_lock: bool = True) -> SimulatedBackend:
    specs = [
        SimGpuSpec(u, "sim", CLOCKS, settle_s=0.0, idle_watts=75.0, allow_lock=allow_lock)
        for u in ("GPU-a", "GPU-b")
    ]
    SimGpuDir.create(tmp_path / "gpus", specs)
    return SimulatedBackend(tmp_path / "gpus", ManualClock())


def test_locked_gpus_are_in_the_state_file_until_reset(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    actuator = ClockActuator(backend, StateFile(tmp_path / "state.json"))
    assert actuator.lock(["GPU-a", "GPU-b"], 1005, CLOCKS)
    assert StateFile(tmp_path / "state.json").locked == {"GPU-a", "GPU-b"}
    actuator.release(["GPU-a"])
    assert StateFile(tmp_path / "state.json").locked == {"GPU-b"}
    assert backend.locked_mhz("GPU-a") is None
    assert backend.locked_mhz("GPU-b") == 1005


def test_recovery_resets_the_gpus_a_predecessor_left_locked(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    ClockActuator(backend, StateFile(tmp_path / "state.json")).lock(["GPU-b"], 990, CLOCKS)
    successor = ClockActuator(backend, StateFile(tmp_path / "state.json"))
    assert successor.recover(["GPU-a", "GPU-b"]) == ["GPU-b"]
    assert backend.locked_mhz("GPU-b") is None
    assert StateFile(tmp_path / "state.json").locked == frozenset()


def test_an_unreadable_state_file_resets_every_candidate_gpu(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    backend.lock_sm_clock("GPU-a", 990, 990)
    (tmp_path / "state.json").write_text("{torn")
    actuator = ClockActuator(backend, StateFile(tmp_path / "state.json"))
    assert actuator.recover(["GPU-a", "GPU-b"]) == ["GPU-a", "GPU-b"]
    assert backend.locked_mhz("GPU-a") is None


def test_a_clock_outside_the_allowed_set_is_never_written(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    actuator = ClockActuator(backend, StateFile(tmp_path / "state.json"))
    with pytest.raises(errors.GpuError, match="not an allowed clock"):
        actuator.lock(["GPU-a"], 2100, CLOCKS)
    with pytest.raises(errors.GpuError):
        actuator.lock(["GPU-a"], 900, (1005, 1020))
    assert backend.locked_mhz("GPU-a") is None
    assert actuator.state.locked == frozenset()


def test_permission_denied_switches_to_read_only_and_never_writes_again(tmp_path: Path) -> None:
    backend = _backend(tmp_path, allow_lock=False)
    actuator = ClockActuator(backend, StateFile(tmp_path / "state.json"))
    assert not actuator.lock(["GPU-a"], 1005, CLOCKS)
    assert actuator.read_only
    assert "permission" in actuator.read_only_reason
    assert actuator.state.locked == frozenset()
    assert not actuator.lock(["GPU-b"], 1005, CLOCKS)
