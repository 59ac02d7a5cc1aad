"""A recording stand-in for the ``pynvml`` module: records every call with its arguments,
answers from a small table of devices, and raises the *real* pynvml exception classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pynvml


@dataclass
class FakeDevice:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    memory_clocks_mhz: tuple[int, ...] = (2619, 1593)
    graphics_clocks_mhz: dict[int, tuple[int, ...]] = field(
        default_factory=lambda: {2619: (1980, 1965, 1005, 990, 345), 1593: (1400, 345)}
    )
    sm_clock_mhz: int = 1980
    energy_mj: int = 123_456
    power_mw: int = 350_500
    reasons: int = 0x4 | 0x1000
    mig_mode: int = 0
    locked_mhz: int | None = None
    """The locked range's top while a lock is in force (what a reset must clear)."""


class FakeNvml:
    NVMLError = pynvml.NVMLError
    NVMLError_NoPermission = pynvml.NVMLError_NoPermission
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_NotFound = pynvml.NVMLError_NotFound
    NVMLError_InvalidArgument = pynvml.NVMLError_InvalidArgument
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVMLError_Uninitialized = pynvml.NVMLError_Uninitialized
    NVMLError_GpuIsLost = pynvml.NVMLError_GpuIsLost
    NVMLError_FunctionNotFound = pynvml.NVMLError_FunctionNotFound
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE

    def __init__(self, devices: list[FakeDevice], mig_supported: bool = True) -> None:
        self.devices = devices
        self.mig_supported = mig_supported
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.failures: dict[str, BaseException] = {}
        self.device_failures: dict[tuple[str, int], BaseException] = {}
        """(call name, device index) -> exception: one GPU misbehaving among others."""

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        failure = self.failures.get(name)
        if failure is None and args and isinstance(args[0], tuple) and args[0][:1] == ("handle",):
            failure = self.device_failures.get((name, args[0][1]))
        if failure is not None:
            raise failure

    def _dev(self, handle: Any) -> FakeDevice:
        assert isinstance(handle, tuple)
        assert handle[0] == "handle"
        return self.devices[handle[1]]

    def nvmlInit(self) -> None:
        self._record("nvmlInit")

    def nvmlShutdown(self) -> None:
        self._record("nvmlShutdown")

    def nvmlDeviceGetCount(self) -> int:
        self._record("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[str, int]:
        self._record("nvmlDeviceGetHandleByIndex", index)
        return ("handle", index)

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._record("nvmlDeviceGetUUID", handle)
        return self._dev(handle).uuid

    def nvmlDeviceGetName(self, handle: Any) -> bytes:
        self._record("nvmlDeviceGetName", handle)
        return self._dev(handle).name.encode()

    def nvmlDeviceGetSupportedMemoryClocks(self, handle: Any) -> list[int]:
        self._record("nvmlDeviceGetSupportedMemoryClocks", handle)
        return list(self._dev(handle).memory_clocks_mhz)

    def nvmlDeviceGetSupportedGraphicsClocks(self, handle: Any, memory_mhz: int) -> list[int]:
        self._record("nvmlDeviceGetSupportedGraphicsClocks", handle, memory_mhz)
        return list(self._dev(handle).graphics_clocks_mhz[memory_mhz])

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        self._record("nvmlDeviceGetMigMode", handle)
        if not self.mig_supported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        mode = self._dev(handle).mig_mode
        return [mode, mode]

    def nvmlDeviceSetGpuLockedClocks(self, handle: Any, min_mhz: int, max_mhz: int) -> None:
        self._record("nvmlDeviceSetGpuLockedClocks", handle, min_mhz, max_mhz)
        self._dev(handle).sm_clock_mhz = max_mhz
        self._dev(handle).locked_mhz = max_mhz

    def nvmlDeviceResetGpuLockedClocks(self, handle: Any) -> None:
        self._record("nvmlDeviceResetGpuLockedClocks", handle)
        self._dev(handle).sm_clock_mhz = 1980
        self._dev(handle).locked_mhz = None

    def nvmlDeviceGetClockInfo(self, handle: Any, clock_type: int) -> int:
        self._record("nvmlDeviceGetClockInfo", handle, clock_type)
        return self._dev(handle).sm_clock_mhz

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        self._record("nvmlDeviceGetTotalEnergyConsumption", handle)
        return self._dev(handle).energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        self._record("nvmlDeviceGetPowerUsage", handle)
        return self._dev(handle).power_mw

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        self._record("nvmlDeviceGetCurrentClocksEventReasons", handle)
        return self._dev(handle).reasons
