"""Every clock write of the agent goes through here: clamp, record, lock, read back, reset.

The actuator owns the safety rules that do not depend on a policy: it never locks a clock outside
the allowed set it is given (device clocks within the service's bounds), it records a GPU in the state file before the
lock, it reads the clock back, and it switches to read-only mode (never writes again, says so)
when the GPU refuses permission.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from joulescale_agent import errors
from joulescale_agent.gpu.backend import GpuBackend, ThrottleReason
from joulescale_agent.safety.statefile import StateFile

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadBack:
    uuid: str
    sm_clock_mhz: int
    throttle: ThrottleReason


class ClockActuator:
    def __init__(self, backend: GpuBackend, state: StateFile) -> None:
        self.backend = backend
        self.state = state
        self.read_only = False
        self.read_only_reason = ""

    def supported(self, uuid: str) -> tuple[int, ...]:
        return self.backend.supported_sm_clocks_mhz(uuid)

    def recover(self, candidates: Iterable[str]) -> list[str]:
        """Reset GPUs that a crashed predecessor left locked; returns the ones reset."""
        leftovers = set(self.state.locked)
        if "*" in leftovers:
            leftovers = (leftovers - {"*"}) | set(candidates)
        reset = []
        for uuid in sorted(leftovers):
            try:
                self.backend.reset_sm_clock(uuid)
            except errors.GpuNotFoundError:
                log.warning("leftover GPU %s is not on this node any more; forgetting it", uuid)
            except errors.GpuPermissionError as error:
                self._enter_read_only(error)
                continue
            except errors.GpuError as error:
                log.error("could not reset leftover GPU %s: %s", uuid, error)
                continue
            reset.append(uuid)
            self.state.remove(uuid)
        self.state.remove("*")
        if reset:
            log.warning("reset clocks left locked by a previous agent: %s", ", ".join(reset))
        return reset

    def _enter_read_only(self, error: errors.GpuPermissionError) -> None:
        if not self.read_only:
            log.error("no permission to change GPU clocks (%s): running read-only", error)
        self.read_only = True
        self.read_only_reason = str(error)

    def lock(self, uuids: Iterable[str], sm_clock_mhz: int, allowed_mhz: Collection[int]) -> bool:
        """Lock every GPU of a tensor-parallel group to one clock; False if nothing was written."""
        if sm_clock_mhz not in allowed_mhz:
            raise errors.GpuError(f"refusing to lock {sm_clock_mhz} MHz: not an allowed clock")
        if self.read_only:
            return False
        for uuid in uuids:
            self.state.add(uuid)
            try:
                self.backend.lock_sm_clock(uuid, sm_clock_mhz, sm_clock_mhz)
            except errors.GpuPermissionError as error:
                self.state.remove(uuid)
                self._enter_read_only(error)
                return False
        return True

    def release(self, uuids: Iterable[str]) -> None:
        """Reset locked clocks; a GPU stays in the state file if its reset failed."""
        for uuid in uuids:
            if uuid not in self.state.locked:
                continue
            try:
                self.backend.reset_sm_clock(uuid)
            except errors.GpuNotFoundError:
                pass
            except errors.GpuError as error:
                log.error("could not reset GPU %s: %s", uuid, error)
                continue
            self.state.remove(uuid)

    def release_all(self) -> None:
        self.release(sorted(self.state.locked))

    def read_back(self, uuid: str) -> ReadBack:
        return ReadBack(uuid, self.backend.sm_clock_mhz(uuid), self.backend.throttle_reasons(uuid))
