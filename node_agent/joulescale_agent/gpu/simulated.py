"""The simulated backend: the same interface as NVML over the shared simulated-GPU directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from joulescale.profiles.settle import request_clock
from joulescale_agent import errors
from joulescale_agent.clock import Clock, monotonic
from joulescale_agent.gpu.backend import GpuInfo, ThrottleReason
from joulescale_agent.gpu.simstate import LockState, SimGpuDir, SimGpuSpec, clock_change, effective_clock_mhz


class SimulatedBackend:
    """Locks write the shared lock file; reads follow the settle rule and the engine's energy."""

    name = "simulated"

    def __init__(self, root: Path, clock: Clock = monotonic) -> None:
        self._dir = SimGpuDir(root)
        self._clock = clock
        self._specs = {spec.uuid: spec for spec in self._dir.specs()}

    def _spec(self, uuid: str) -> SimGpuSpec:
        try:
            return self._specs[uuid]
        except KeyError:
            raise errors.GpuNotFoundError(f"no simulated GPU {uuid}") from None

    def devices(self) -> Sequence[GpuInfo]:
        return tuple(
            GpuInfo(uuid, index, spec.name) for index, (uuid, spec) in enumerate(self._specs.items())
        )

    def supported_sm_clocks_mhz(self, uuid: str) -> tuple[int, ...]:
        return self._spec(uuid).supported_sm_clocks_mhz

    def _change(self, uuid: str, locked_mhz: int | None) -> None:
        spec = self._spec(uuid)
        if not spec.allow_lock:
            raise errors.GpuPermissionError(f"simulated GPU {uuid}: no permission to change clocks")
        if spec.mig_enabled:
            raise errors.GpuMigError(f"simulated GPU {uuid} is MIG-partitioned")
        if not spec.lock_supported:
            raise errors.GpuNotSupportedError(f"simulated GPU {uuid}: clock locking is not supported")
        now_s = self._clock()
        lock = self._dir.read_lock(uuid)
        was = clock_change(spec, lock)
        target_mhz = locked_mhz if locked_mhz is not None else spec.default_mhz
        change = request_clock(was, spec.default_mhz, target_mhz, now_s, spec.settle_s)
        # The file keeps when the change in force was asked for: asking again does not restart it.
        changed_at_s = lock.changed_at_s if lock is not None and change is was else now_s
        self._dir.write_lock(uuid, LockState(locked_mhz, change.previous_mhz, changed_at_s))

    def lock_sm_clock(self, uuid: str, min_mhz: int, max_mhz: int) -> None:
        spec = self._spec(uuid)
        if min_mhz > max_mhz:
            raise errors.GpuError(f"lock range {min_mhz}..{max_mhz} MHz is empty")
        # Like the driver: the GPU runs at the highest supported clock inside the locked range.
        inside = [c for c in spec.supported_sm_clocks_mhz if min_mhz <= c <= max_mhz]
        if not inside:
            raise errors.GpuError(f"no supported clock in {min_mhz}..{max_mhz} MHz")
        self._change(uuid, max(inside))

    def reset_sm_clock(self, uuid: str) -> None:
        self._change(uuid, None)

    def sm_clock_mhz(self, uuid: str) -> int:
        return effective_clock_mhz(self._spec(uuid), self._dir.read_lock(uuid), self._clock())

    def locked_mhz(self, uuid: str) -> int | None:
        """The lock in force (simulation only; NVML has no such query)."""
        lock = self._dir.read_lock(uuid)
        return None if lock is None else lock.locked_mhz

    def energy_mj(self, uuid: str) -> int:
        self._spec(uuid)
        return int(self._dir.read_energy(uuid).energy_mj)

    def power_watts(self, uuid: str) -> float:
        spec = self._spec(uuid)
        state = self._dir.read_energy(uuid)
        return state.power_watts if state.updated_at_s is not None else spec.idle_watts

    def throttle_reasons(self, uuid: str) -> ThrottleReason:
        self._spec(uuid)
        return ThrottleReason.NONE

    def close(self) -> None:
        return None
