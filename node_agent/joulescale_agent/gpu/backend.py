"""The one interface every GPU backend implements (NVML, simulated).

Identifiers are GPU UUIDs (``GPU-...``): the kubelet PodResources API and
``NVIDIA_VISIBLE_DEVICES`` both name GPUs that way, and UUIDs survive re-enumeration.
Calls are synchronous: NVML answers in well under a millisecond for reads, and the loop
only writes when the target clock changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntFlag
from typing import Protocol


class ThrottleReason(IntFlag):
    """Bits of NVML's clocks-event (throttle) reasons that the agent reports."""

    NONE = 0
    GPU_IDLE = 0x1
    APPLICATIONS_CLOCKS_SETTING = 0x2
    SW_POWER_CAP = 0x4
    HW_SLOWDOWN = 0x8
    SYNC_BOOST = 0x10
    SW_THERMAL = 0x20
    HW_THERMAL = 0x40
    HW_POWER_BRAKE = 0x80
    DISPLAY_CLOCKS = 0x100


@dataclass(frozen=True, slots=True)
class GpuInfo:
    uuid: str
    index: int
    name: str


class GpuBackend(Protocol):
    """Clock control and telemetry of the GPUs of one node."""

    name: str

    def devices(self) -> Sequence[GpuInfo]: ...

    def supported_sm_clocks_mhz(self, uuid: str) -> tuple[int, ...]:
        """Supported SM clocks at the top memory clock, ascending."""
        ...

    def lock_sm_clock(self, uuid: str, min_mhz: int, max_mhz: int) -> None: ...

    def reset_sm_clock(self, uuid: str) -> None:
        """Release any locked SM clock: the GPU returns to its default clock management."""
        ...

    def sm_clock_mhz(self, uuid: str) -> int:
        """The SM clock the GPU runs at now (read back, not the requested one)."""
        ...

    def energy_mj(self, uuid: str) -> int:
        """Energy counter in millijoules (monotonic since driver load)."""
        ...

    def power_watts(self, uuid: str) -> float: ...

    def throttle_reasons(self, uuid: str) -> ThrottleReason: ...

    def close(self) -> None: ...
