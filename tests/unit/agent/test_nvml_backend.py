"""The NVML backend against a recording fake of pynvml: exact calls, arguments and error mapping."""

from __future__ import annotations

import pynvml
import pytest

from joulescale_agent import errors
from joulescale_agent.gpu.backend import ThrottleReason
from joulescale_agent.gpu.nvml import NvmlBackend
from joulescale_agent.gpu.nvml_errors import NVML_ERROR_MAP, map_nvml_error
from tests.unit.agent.fake_pynvml import FakeDevice, FakeNvml

GPU0 = "GPU-00000000-0000-0000-0000-000000000000"
GPU1 = "GPU-11111111-1111-1111-1111-111111111111"


@pytest.fixture
def nvml() -> FakeNvml:
    return FakeNvml([FakeDevice(GPU0), FakeDevice(GPU1, mig_mode=pynvml.NVML_DEVICE_MIG_ENABLE)])


def test_start_up_initialises_nvml_and_enumerates_devices_by_uuid(nvml: FakeNvml) -> None:
    backend = NvmlBackend(nvml)
    assert [(d.uuid, d.index, d.name) for d in backend.devices()] == [
        (GPU0, 0, "NVIDIA H100 80GB HBM3"),
        (GPU1, 1, "NVIDIA H100 80GB HBM3"),
    ]
    assert nvml.calls[:2] == [("nvmlInit", ()), ("nvmlDeviceGetCount", ())]
    assert ("nvmlDeviceGetHandleByIndex", (1,)) in nvml.calls


def test_supported_clocks_come_from_the_top_memory_clock_sorted_and_cached(nvml: FakeNvml) -> None:
    backend = NvmlBackend(nvml)
    nvml.calls.clear()
    assert backend.supported_sm_clocks_mhz(GPU0) == (345, 990, 1005, 1965, 1980)
    assert backend.supported_sm_clocks_mhz(GPU0) == (345, 990, 1005, 1965, 1980)
    assert nvml.calls == [
        ("nvmlDeviceGetSupportedMemoryClocks", (("handle", 0),)),
        ("nvmlDeviceGetSupportedGraphicsClocks", (("handle", 0), 2619)),
    ]


def test_lock_checks_mig_mode_then_sets_locked_clocks_with_the_exact_range(nvml: FakeNvml) -> None:
    backend = NvmlBackend(nvml)
    nvml.calls.clear()
    backend.lock_sm_clock(GPU0, 1005, 1005)
    assert nvml.calls == [
        ("nvmlDeviceGetMigMode", (("handle", 0),)),
        ("nvmlDeviceSetGpuLockedClocks", (("handle", 0), 1005, 1005)),
    ]


def test_lock_is_refused_on_a_mig_partitioned_gpu_without_calling_nvml_lock(nvml: FakeNvml) -> None:
    backend = NvmlBackend(nvml)
    nvml.calls.clear()
    with pytest.raises(errors.GpuMigError):
        backend.lock_sm_clock(GPU1, 1005, 1005)
    assert [name for name, _ in nvml.calls] == ["nvmlDeviceGetMigMode"]


def test_lock_proceeds_on_a_gpu_that_does_not_support_mig() -> None:
    nvml = FakeNvml([FakeDevice(GPU0)], mig_supported=False)
    NvmlBackend(nvml).lock_sm_clock(GPU0, 990, 990)
    assert nvml.calls[-1] == ("nvmlDeviceSetGpuLockedClocks", (("handle", 0), 990, 990))


def test_reset_and_reads_use_the_right_calls_and_units(nvml: FakeNvml) -> None:
    backend = NvmlBackend(nvml)
    nvml.calls.clear()
    backend.reset_sm_clock(GPU0)
    assert backend.sm_clock_mhz(GPU0) == 1980
    assert backend.energy_mj(GPU0) == 123_456
    assert backend.power_watts(GPU0) == pytest.approx(350.5)
    assert backend.throttle_reasons(GPU0) == ThrottleReason.SW_POWER_CAP
    assert nvml.calls == [
        ("nvmlDeviceResetGpuLockedClocks", (("handle", 0),)),
        ("nvmlDeviceGetClockInfo", (("handle", 0), pynvml.NVML_CLOCK_SM)),
        ("nvmlDeviceGetTotalEnergyConsumption", (("handle", 0),)),
        ("nvmlDeviceGetPowerUsage", (("handle", 0),)),
        ("nvmlDeviceGetCurrentClocksEventReasons", (("handle", 0),)),
    ]


def test_no_permission_on_lock_becomes_the_agents_permission_error(nvml: FakeNvml) -> None:
    nvml.failures["nvmlDeviceSetGpuLockedClocks"] = pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
    backend = NvmlBackend(nvml)
    with pytest.raises(errors.GpuPermissionError) as caught:
        backend.lock_sm_clock(GPU0, 1005, 1005)
    assert isinstance(caught.value.__cause__, pynvml.NVMLError_NoPermission)


def test_missing_library_at_start_up_becomes_unavailable() -> None:
    nvml = FakeNvml([])
    nvml.failures["nvmlInit"] = pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(errors.GpuUnavailableError):
        NvmlBackend(nvml)


def test_unknown_uuid_is_not_found_without_touching_nvml(nvml: FakeNvml) -> None:
    backend = NvmlBackend(nvml)
    nvml.calls.clear()
    with pytest.raises(errors.GpuNotFoundError):
        backend.sm_clock_mhz("GPU-missing")
    assert nvml.calls == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (pynvml.NVML_ERROR_NO_PERMISSION, errors.GpuPermissionError),
        (pynvml.NVML_ERROR_NOT_SUPPORTED, errors.GpuNotSupportedError),
        (pynvml.NVML_ERROR_NOT_FOUND, errors.GpuNotFoundError),
        (pynvml.NVML_ERROR_INVALID_ARGUMENT, errors.GpuError),  # not "gone": may still be locked
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, errors.GpuUnavailableError),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, errors.GpuUnavailableError),
        (pynvml.NVML_ERROR_UNINITIALIZED, errors.GpuUnavailableError),
        (pynvml.NVML_ERROR_GPU_IS_LOST, errors.GpuLostError),
        (pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, errors.GpuNotSupportedError),
        (pynvml.NVML_ERROR_TIMEOUT, errors.GpuError),
    ],
)
def test_error_map_translates_each_real_nvml_error_class(code: int, expected: type[Exception]) -> None:
    mapped = map_nvml_error(pynvml, pynvml.NVMLError(code), "op")
    assert type(mapped) is expected
    assert str(mapped).startswith("op: ")


def test_every_mapped_name_is_a_real_pynvml_error_class() -> None:
    for class_name in NVML_ERROR_MAP:
        assert issubclass(getattr(pynvml, class_name), pynvml.NVMLError)
