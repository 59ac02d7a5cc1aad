"""The actuator and the state file: the rules that keep clocks safe whatever the policy says."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynvml
import pytest

from joulescale_agent import errors
from joulescale_agent.clock import ManualClock
from joulescale_agent.exporter import AgentMetrics
from joulescale_agent.gpu.nvml import NvmlBackend
from joulescale_agent.gpu.simstate import SimGpuDir, SimGpuSpec
from joulescale_agent.gpu.simulated import SimulatedBackend
from joulescale_agent.safety.actuator import ClockActuator
from joulescale_agent.safety.statefile import StateFile
from tests.agent.fullfs import FullableDir
from tests.unit.agent.fake_pynvml import FakeDevice, FakeNvml

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


def test_permission_denied_switches_to_read_only_and_never_writes_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = _backend(tmp_path, allow_lock=False)
    actuator = ClockActuator(backend, StateFile(tmp_path / "state.json"))
    assert not actuator.lock(["GPU-a"], 1005, CLOCKS)
    assert actuator.read_only
    # The reason reaches the operator of the node once, in the log, with the backend's own words.
    reasons = [r.getMessage() for r in caplog.records if "running read-only" in r.getMessage()]
    assert reasons == ["no permission to change GPU clocks (simulated GPU GPU-a: no permission to change "
                       "clocks): running read-only"]
    assert actuator.state.locked == frozenset()
    assert not actuator.lock(["GPU-b"], 1005, CLOCKS)


# --- a real NVML backend over the recording fake: one GPU misbehaving among others ---------

TP4 = [f"GPU-{i}" for i in range(4)]
NVML_CLOCKS = (1980, 1965, 1005, 990, 345)


def _nvml(uuids: list[str] = TP4, **device: Any) -> tuple[FakeNvml, NvmlBackend]:
    fake = FakeNvml([FakeDevice(u, **device) for u in uuids])
    return fake, NvmlBackend(fake)


def _locks(fake: FakeNvml) -> list[int | None]:
    return [d.locked_mhz for d in fake.devices]


@pytest.fixture
def fullable(tmp_path: Path) -> Iterator[FullableDir]:
    directory = FullableDir(tmp_path / "state")
    yield directory
    directory.close()


def test_with_the_state_file_unwritable_every_gpu_of_a_group_is_still_reset(fullable: FullableDir) -> None:
    fake, backend = _nvml()
    actuator = ClockActuator(backend, StateFile(fullable.path / "locked.json"))
    assert actuator.lock(TP4, 1005, NVML_CLOCKS)
    fullable.fill()
    assert actuator.release_all() == []
    assert _locks(fake) == [None] * 4
    assert actuator.state.locked == frozenset()
    assert actuator.state.write_error is not None
    # The file still names the group (a superset is safe); a successor resets, and keeps running.
    assert StateFile(fullable.path / "locked.json").locked == set(TP4)
    successor = ClockActuator(backend, StateFile(fullable.path / "locked.json"))
    assert successor.recover(TP4) == TP4


def test_with_the_state_file_unwritable_a_gpu_it_does_not_name_is_never_locked(fullable: FullableDir) -> None:
    fake, backend = _nvml()
    actuator = ClockActuator(backend, StateFile(fullable.path / "locked.json"))
    assert actuator.lock(TP4[:2], 1005, NVML_CLOCKS)
    fullable.fill()
    assert actuator.lock(TP4[:2], 990, NVML_CLOCKS), "recorded GPUs may change clock"
    assert not actuator.lock(TP4[2:], 990, NVML_CLOCKS), "a crash would leave these locked unrecorded"
    assert _locks(fake) == [990, 990, None, None]
    fullable.free()
    assert actuator.lock(TP4[2:], 990, NVML_CLOCKS)
    assert StateFile(fullable.path / "locked.json").locked == set(TP4)


def test_a_permission_error_mid_group_keeps_the_still_locked_gpu_recorded(tmp_path: Path) -> None:
    fake, backend = _nvml(TP4[:2])
    actuator = ClockActuator(backend, StateFile(tmp_path / "locked.json"))
    assert actuator.lock(TP4[:2], 1005, NVML_CLOCKS)
    denied = pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
    fake.device_failures[("nvmlDeviceSetGpuLockedClocks", 1)] = denied
    fake.device_failures[("nvmlDeviceResetGpuLockedClocks", 1)] = denied
    assert not actuator.lock(TP4[:2], 990, NVML_CLOCKS)
    assert actuator.read_only
    assert _locks(fake) == [None, 1005], "the group is released as far as the GPU lets us"
    assert StateFile(tmp_path / "locked.json").locked == {"GPU-1"}, "GPU-1 is still locked at 1005 MHz"


def test_a_reset_that_raises_a_non_gpu_error_does_not_stop_the_others(tmp_path: Path) -> None:
    fake, backend = _nvml()
    actuator = ClockActuator(backend, StateFile(tmp_path / "locked.json"))
    assert actuator.lock(TP4, 1005, NVML_CLOCKS)
    fake.device_failures[("nvmlDeviceResetGpuLockedClocks", 0)] = RuntimeError("driver bug")
    assert actuator.release_all() == ["GPU-0"]
    assert _locks(fake) == [1005, None, None, None]
    assert StateFile(tmp_path / "locked.json").locked == {"GPU-0"}


@pytest.mark.parametrize(
    ("code", "forgotten"),
    [
        (pynvml.NVML_ERROR_INVALID_ARGUMENT, False),
        (pynvml.NVML_ERROR_TIMEOUT, False),
        (pynvml.NVML_ERROR_UNKNOWN, False),
        (pynvml.NVML_ERROR_NOT_FOUND, True),
        (pynvml.NVML_ERROR_GPU_IS_LOST, True),
    ],
)
def test_only_a_gpu_that_is_gone_leaves_the_state_without_a_reset(
    tmp_path: Path, code: int, forgotten: bool
) -> None:
    fake, backend = _nvml(TP4[:2])
    actuator = ClockActuator(backend, StateFile(tmp_path / "locked.json"))
    assert actuator.lock(TP4[:2], 1005, NVML_CLOCKS)
    fake.device_failures[("nvmlDeviceResetGpuLockedClocks", 0)] = pynvml.NVMLError(code)
    actuator.release_all()
    assert _locks(fake)[1] is None
    expected = set() if forgotten else {"GPU-0"}
    assert StateFile(tmp_path / "locked.json").locked == expected


HUGE = json.dumps({"locked_gpus": [f"GPU-{i:08d}" for i in range(80_000)]}).encode()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"   ",
        b"[]",
        b"{}",
        b"null",
        b"5",
        b'"GPU-0"',
        b'["GPU-0"]',
        b'{"locked_gpus": "GPU-0"}',
        b'{"locked_gpus": {"GPU-0": 1}}',
        b'{"locked_gpus": [0, 1]}',
        b'{"locked_gpus": [null]}',
        b'{"locked_gpus": [""]}',
        b'{"locked_gpus": [["GPU-0"]]}',
        b'{"gpus": ["GPU-0"]}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"locked_gpus": ' * 50_000,
        b"\xff\xfe\x00garbage",
        b'{"locked_gpus": ["GPU-0"]',
        HUGE,
    ],
    ids=lambda c: repr(c[:24]) + f"..{len(c)}B",
)
def test_any_unexpected_state_file_shape_resets_every_gpu_at_start_up(tmp_path: Path, content: bytes) -> None:
    fake, backend = _nvml()
    for uuid in TP4:
        backend.lock_sm_clock(uuid, 990, 990)
    (tmp_path / "locked.json").write_bytes(content)
    actuator = ClockActuator(backend, StateFile(tmp_path / "locked.json"))
    assert actuator.recover(TP4) == TP4
    assert _locks(fake) == [None] * 4
    assert StateFile(tmp_path / "locked.json").locked == frozenset()


def test_a_fifo_in_place_of_the_state_file_resets_every_gpu_without_hanging(tmp_path: Path) -> None:
    fake, backend = _nvml()
    backend.lock_sm_clock("GPU-2", 990, 990)
    os.mkfifo(tmp_path / "locked.json")
    actuator = ClockActuator(backend, StateFile(tmp_path / "locked.json"))
    assert actuator.recover(TP4) == TP4
    assert _locks(fake) == [None] * 4


def test_a_state_file_that_is_a_directory_resets_every_gpu_and_does_not_crash(tmp_path: Path) -> None:
    _, backend = _nvml()
    backend.lock_sm_clock("GPU-3", 990, 990)
    (tmp_path / "locked.json").mkdir()
    actuator = ClockActuator(backend, StateFile(tmp_path / "locked.json"))
    assert actuator.recover(TP4) == TP4
    assert actuator.lock(["GPU-0"], 1005, NVML_CLOCKS), "'*' still on disk names every GPU"
    assert actuator.release_all() == []


def test_one_agent_holds_the_state_file_a_second_is_refused_until_the_first_is_gone(tmp_path: Path) -> None:
    first, second = StateFile(tmp_path / "locked.json"), StateFile(tmp_path / "locked.json")
    first.acquire()
    with pytest.raises(errors.StateFileLockedError, match="in use by another agent"):
        second.acquire()
    first.release_lock()
    second.acquire()
    second.release_lock()


@pytest.mark.parametrize(
    ("device", "failure"),
    [
        ({"mig_mode": pynvml.NVML_DEVICE_MIG_ENABLE}, None),
        ({}, pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)),
    ],
    ids=["mig", "not-supported"],
)
def test_a_gpu_that_cannot_lock_goes_read_only_alone(
    tmp_path: Path, device: dict[str, Any], failure: Exception | None, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeNvml([FakeDevice("GPU-0"), FakeDevice("GPU-1", **device)])
    if failure is not None:
        fake.device_failures[("nvmlDeviceSetGpuLockedClocks", 1)] = failure
    metrics = AgentMetrics()
    actuator = ClockActuator(NvmlBackend(fake), StateFile(tmp_path / "locked.json"), metrics)
    for _ in range(40):
        assert not actuator.lock(["GPU-1"], 1005, NVML_CLOCKS)
    assert actuator.lock(["GPU-0"], 1005, NVML_CLOCKS), "the other GPU keeps its control"
    assert _locks(fake) == [1005, None]
    assert set(actuator.read_only_gpus) == {"GPU-1"}
    assert not actuator.no_permission
    assert sum("GPU-1" in r.getMessage() for r in caplog.records) == 1, "logged once"
    assert metrics.registry.get_sample_value("joulescale_gpu_read_only", {"gpu": "GPU-1"}) == 1
    assert metrics.registry.get_sample_value("joulescale_read_only") == 1
    assert actuator.state.locked == {"GPU-0"}


def test_a_gpu_that_cannot_list_its_clocks_is_read_only_too(tmp_path: Path) -> None:
    fake = FakeNvml([FakeDevice("GPU-0"), FakeDevice("GPU-1")])
    unsupported = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    fake.device_failures[("nvmlDeviceGetSupportedMemoryClocks", 1)] = unsupported
    metrics = AgentMetrics()
    actuator = ClockActuator(NvmlBackend(fake), StateFile(tmp_path / "locked.json"), metrics)
    assert actuator.supported("GPU-0") == tuple(sorted(NVML_CLOCKS))
    with pytest.raises(errors.GpuNotSupportedError):
        actuator.supported("GPU-1")
    assert set(actuator.read_only_gpus) == {"GPU-1"}
    assert metrics.registry.get_sample_value("joulescale_gpu_read_only", {"gpu": "GPU-1"}) == 1
