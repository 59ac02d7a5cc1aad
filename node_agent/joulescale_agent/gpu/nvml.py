"""The NVML backend (nvidia-ml-py, imported as ``pynvml``).

The module is a constructor parameter so tests pass a recording fake instead of patching.
Privileged calls (lock, reset) are in this one class; every NVML error leaves it as an agent
error (see nvml_errors).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from joulescale_agent import errors
from joulescale_agent.gpu.backend import GpuInfo, ThrottleReason
from joulescale_agent.gpu.nvml_errors import nvml_call

NVML_MODULE = "pynvml"
"""Imported only when the backend starts (tests pass a fake); `joulescale-agent --check` imports it."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlBackend:
    """Clock control through NVML; one instance per agent process (nvmlInit .. nvmlShutdown)."""

    name = "nvml"

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml: Any = nvml if nvml is not None else importlib.import_module(NVML_MODULE)
        with nvml_call(self._nvml, "nvmlInit"):
            self._nvml.nvmlInit()
        self._handles: dict[str, Any] = {}
        self._infos: list[GpuInfo] = []
        self._clocks: dict[str, tuple[int, ...]] = {}
        with nvml_call(self._nvml, "enumerate devices"):
            for index in range(self._nvml.nvmlDeviceGetCount()):
                handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(self._nvml.nvmlDeviceGetUUID(handle))
                name = _text(self._nvml.nvmlDeviceGetName(handle))
                self._handles[uuid] = handle
                self._infos.append(GpuInfo(uuid=uuid, index=index, name=name))

    def _handle(self, uuid: str) -> Any:
        try:
            return self._handles[uuid]
        except KeyError:
            raise errors.GpuNotFoundError(f"no GPU {uuid} on this node") from None

    def devices(self) -> Sequence[GpuInfo]:
        return tuple(self._infos)

    def supported_sm_clocks_mhz(self, uuid: str) -> tuple[int, ...]:
        cached = self._clocks.get(uuid)
        if cached is not None:
            return cached
        handle = self._handle(uuid)
        with nvml_call(self._nvml, "supported clocks"):
            top_memory_mhz = max(self._nvml.nvmlDeviceGetSupportedMemoryClocks(handle))
            clocks = self._nvml.nvmlDeviceGetSupportedGraphicsClocks(handle, top_memory_mhz)
        result = tuple(sorted({int(c) for c in clocks}))
        self._clocks[uuid] = result
        return result

    def _refuse_mig(self, handle: Any, uuid: str) -> None:
        try:
            current, _pending = self._nvml.nvmlDeviceGetMigMode(handle)
        except self._nvml.NVMLError_NotSupported:
            return  # a GPU without MIG support cannot be partitioned
        except self._nvml.NVMLError as error:
            raise errors.GpuError(f"MIG mode of {uuid}: {error}") from error
        if current == self._nvml.NVML_DEVICE_MIG_ENABLE:
            raise errors.GpuMigError(f"{uuid} is MIG-partitioned: clock locking is not supported")

    def lock_sm_clock(self, uuid: str, min_mhz: int, max_mhz: int) -> None:
        handle = self._handle(uuid)
        self._refuse_mig(handle, uuid)
        with nvml_call(self._nvml, f"lock SM clock of {uuid}"):
            self._nvml.nvmlDeviceSetGpuLockedClocks(handle, int(min_mhz), int(max_mhz))

    def reset_sm_clock(self, uuid: str) -> None:
        handle = self._handle(uuid)
        with nvml_call(self._nvml, f"reset SM clock of {uuid}"):
            self._nvml.nvmlDeviceResetGpuLockedClocks(handle)

    def sm_clock_mhz(self, uuid: str) -> int:
        handle = self._handle(uuid)
        with nvml_call(self._nvml, f"SM clock of {uuid}"):
            return int(self._nvml.nvmlDeviceGetClockInfo(handle, self._nvml.NVML_CLOCK_SM))

    def energy_mj(self, uuid: str) -> int:
        handle = self._handle(uuid)
        with nvml_call(self._nvml, f"energy of {uuid}"):
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))

    def power_watts(self, uuid: str) -> float:
        handle = self._handle(uuid)
        with nvml_call(self._nvml, f"power of {uuid}"):
            return float(self._nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0

    def throttle_reasons(self, uuid: str) -> ThrottleReason:
        handle = self._handle(uuid)
        with nvml_call(self._nvml, f"throttle reasons of {uuid}"):
            bits = int(self._nvml.nvmlDeviceGetCurrentClocksEventReasons(handle))
        known = 0
        for reason in ThrottleReason:
            known |= reason.value
        return ThrottleReason(bits & known)

    def close(self) -> None:
        with nvml_call(self._nvml, "nvmlShutdown"):
            self._nvml.nvmlShutdown()
