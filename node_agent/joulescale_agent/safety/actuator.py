"""Every clock write of the agent goes through here: clamp, record, lock, read back, reset.

The actuator owns the safety rules that do not depend on a policy:

- it never locks a clock outside the allowed set it is given (device clocks within the
  service's bounds);
- it records a GPU in the state file before the lock, and locks nothing the file on disk does
  not name (a successor after a crash must find every lock);
- a GPU leaves the state only when its reset succeeded or the GPU is gone (NVML NotFound or
  GpuIsLost); any other failure keeps it there, and one GPU's failure never skips the others;
- a tensor-parallel group is never left at mixed clocks: a lock refused mid-group releases it;
- without NVML permission the whole agent turns read-only; a GPU that cannot lock clocks
  (MIG-partitioned, NotSupported) turns read-only alone. Both are logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from joulescale_agent import errors
from joulescale_agent.exporter import AgentMetrics
from joulescale_agent.gpu.backend import GpuBackend, ThrottleReason
from joulescale_agent.safety.statefile import ALL, StateFile

log = logging.getLogger(__name__)

GONE = (errors.GpuNotFoundError, errors.GpuLostError)
"""Errors that mean the GPU is not there any more: nothing left to reset."""


@dataclass(frozen=True, slots=True)
class ReadBack:
    uuid: str
    sm_clock_mhz: int
    throttle: ThrottleReason


class ClockActuator:
    def __init__(self, backend: GpuBackend, state: StateFile, metrics: AgentMetrics | None = None) -> None:
        self.backend = backend
        self.state = state
        self.metrics = metrics
        self.no_permission = False
        """The process may not change clocks at all (no root / CAP_SYS_ADMIN)."""
        self.read_only_gpus: dict[str, str] = {}
        """GPUs that cannot lock clocks (MIG, NotSupported), with the reason."""

    @property
    def read_only(self) -> bool:
        """True when some clock cannot be changed: the whole agent or at least one GPU."""
        return self.no_permission or bool(self.read_only_gpus)

    def supported(self, uuid: str) -> tuple[int, ...]:
        """The GPU's supported clocks; a GPU that cannot say (MIG, NotSupported) turns read-only."""
        try:
            return self.backend.supported_sm_clocks_mhz(uuid)
        except errors.GpuNotSupportedError as error:
            self._gpu_read_only(uuid, error)
            raise

    def recover(self, candidates: Iterable[str]) -> list[str]:
        """Reset GPUs that a crashed predecessor left locked; returns the ones reset.

        An unreadable state file names ``ALL``: every candidate (every GPU of the node) is reset.
        A GPU whose reset fails stays recorded, in memory and (best effort) on disk.
        """
        leftovers = set(self.state.locked)
        if ALL in leftovers:
            leftovers = (leftovers - {ALL}) | set(candidates)
        reset = []
        for uuid in sorted(leftovers):
            self.state.add(uuid)
            if self._reset(uuid, leftover=True):
                reset.append(uuid)
        self.state.remove(ALL)
        if reset:
            log.warning("reset clocks left locked by a previous agent: %s", ", ".join(reset))
        return reset

    def lock(self, uuids: Iterable[str], sm_clock_mhz: int, allowed_mhz: Collection[int]) -> bool:
        """Lock every GPU of a tensor-parallel group to one clock; False if nothing is locked now.

        A GPU error other than permission or support is raised after the group is released.
        """
        if sm_clock_mhz not in allowed_mhz:
            raise errors.GpuError(f"refusing to lock {sm_clock_mhz} MHz: not an allowed clock")
        group = tuple(uuids)
        if self.no_permission or any(uuid in self.read_only_gpus for uuid in group):
            return False
        for uuid in group:
            was_locked = uuid in self.state.locked
            if not self.state.add(uuid):
                # The file cannot name it: a successor after a crash would never reset it.
                self._forget_unlocked(uuid, was_locked)
                self.release(group)
                return False
            try:
                self.backend.lock_sm_clock(uuid, sm_clock_mhz, sm_clock_mhz)
            except errors.GpuPermissionError as error:
                self._forget_unlocked(uuid, was_locked)
                self._enter_read_only(error)
                self.release(group)
                return False
            except errors.GpuNotSupportedError as error:
                self._forget_unlocked(uuid, was_locked)
                self._gpu_read_only(uuid, error)
                self.release(group)
                return False
            except BaseException:
                self.release(group)  # the failed GPU stays recorded: its lock state is unknown
                raise
        return True

    def _forget_unlocked(self, uuid: str, was_locked: bool) -> None:
        """A refused lock changed nothing; a GPU locked before (a group change) stays recorded."""
        if not was_locked:
            self.state.remove(uuid)

    def _enter_read_only(self, error: errors.GpuPermissionError) -> None:
        if not self.no_permission:
            log.error("no permission to change GPU clocks (%s): running read-only", error)
        self.no_permission = True
        if self.metrics is not None:
            self.metrics.read_only.set(1)

    def _gpu_read_only(self, uuid: str, error: errors.GpuError) -> None:
        if uuid not in self.read_only_gpus:
            log.error("GPU %s cannot lock clocks (%s): read-only for this GPU", uuid, error)
        self.read_only_gpus[uuid] = str(error)
        if self.metrics is not None:
            self.metrics.gpu_read_only.labels(uuid).set(1)
            self.metrics.read_only.set(1)

    def _reset(self, uuid: str, *, leftover: bool = False) -> bool:
        """Reset one GPU; True when it is not locked any more (reset, or gone)."""
        try:
            self.backend.reset_sm_clock(uuid)
        except GONE as error:
            log.warning("GPU %s is gone (%s); forgetting its lock", uuid, error)
        except errors.GpuNotSupportedError as error:
            # Clock locking never worked there (MIG, NotSupported): nothing can be locked.
            self._gpu_read_only(uuid, error)
        except errors.GpuPermissionError as error:
            self._enter_read_only(error)
            log.error("could not reset %sGPU %s: %s", "leftover " if leftover else "", uuid, error)
            return False
        except errors.GpuError as error:
            log.error("could not reset %sGPU %s: %s", "leftover " if leftover else "", uuid, error)
            return False
        except Exception:
            log.exception("unexpected error resetting GPU %s; it stays recorded as locked", uuid)
            return False
        self.state.remove(uuid)
        return True

    def release(self, uuids: Iterable[str]) -> list[str]:
        """Reset locked clocks; returns the GPUs whose reset failed (they stay recorded)."""
        return [uuid for uuid in uuids if uuid in self.state.locked and not self._reset(uuid)]

    def release_all(self) -> list[str]:
        """Reset every recorded GPU, once more for those that failed; returns those still locked."""
        failed = self.release(sorted(self.state.locked - {ALL}))
        if failed:
            failed = self.release(failed)
        if failed:
            log.error("clocks still locked after reset attempts: %s", ", ".join(failed))
        return failed

    def read_back(self, uuid: str) -> ReadBack:
        return ReadBack(uuid, self.backend.sm_clock_mhz(uuid), self.backend.throttle_reasons(uuid))
