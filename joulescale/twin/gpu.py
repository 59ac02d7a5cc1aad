"""The simulated GPUs of one instance: applied clock, settle delay, and energy bookkeeping.

All physics (latency, power, power cap) comes from ``joulescale.profiles.physics``; this module
only decides which clock is in force during which part of an iteration. A clock requested at
``t`` takes effect at ``t + settle``; an iteration that spans the change runs its first part at
the old clock and the rest of its work at the new one.
"""

from __future__ import annotations

from collections.abc import Callable

from joulescale.control.observation import Phase
from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile


class SimGpuGroup:
    """The tensor-parallel GPUs of one instance, which always share one clock (ALGORITHMS 3.4)."""

    __slots__ = (
        "_power_watts",
        "_tp",
        "busy_energy_j",
        "busy_s",
        "clock_changes",
        "clock_mhz",
        "clock_trace",
        "pending_at_s",
        "pending_mhz",
        "phase",
        "profile",
        "settle_s",
        "time_at_clock_s",
    )

    def __init__(self, profile: GpuProfile, phase: Phase, initial_mhz: int, settle_s: float) -> None:
        self.profile = profile
        self.phase: Phase = phase
        self.settle_s = settle_s
        self.clock_mhz = initial_mhz
        self.pending_mhz: int | None = None
        self.pending_at_s = 0.0
        self.busy_energy_j = 0.0
        self.busy_s = 0.0
        self.clock_changes = 0
        self.time_at_clock_s: dict[int, float] = {}
        self.clock_trace: list[tuple[float, int]] = [(0.0, initial_mhz)]
        self._power_watts: dict[int, float] = {}
        self._tp = profile.tensor_parallel_size

    @property
    def target_mhz(self) -> int:
        return self.pending_mhz if self.pending_mhz is not None else self.clock_mhz

    def request(self, now_s: float, sm_clock_mhz: int) -> None:
        """Ask for a clock; it is in force ``settle_s`` later."""
        self.settle(now_s)
        if sm_clock_mhz == self.target_mhz:
            return
        self.clock_changes += 1
        if sm_clock_mhz == self.clock_mhz:
            self.pending_mhz = None
            return
        self.pending_mhz = sm_clock_mhz
        self.pending_at_s = now_s + self.settle_s

    def settle(self, now_s: float) -> None:
        """Apply a pending clock whose settle time has passed."""
        if self.pending_mhz is not None and self.pending_at_s <= now_s:
            self._apply_pending()

    def _apply_pending(self) -> None:
        assert self.pending_mhz is not None
        self.clock_mhz = self.pending_mhz
        self.clock_trace.append((self.pending_at_s, self.clock_mhz))
        self.pending_mhz = None

    def power_watts(self, sm_clock_mhz: int) -> float:
        cached = self._power_watts.get(sm_clock_mhz)
        if cached is None:
            cached = physics.busy_power_watts(self.profile, self.phase, sm_clock_mhz)
            self._power_watts[sm_clock_mhz] = cached
        return cached

    def _account(self, sm_clock_mhz: int, duration_s: float) -> None:
        self.busy_energy_j += self._tp * self.power_watts(sm_clock_mhz) * duration_s
        self.busy_s += duration_s
        self.time_at_clock_s[sm_clock_mhz] = self.time_at_clock_s.get(sm_clock_mhz, 0.0) + duration_s

    def run(self, now_s: float, latency_s: Callable[[int], float]) -> float:
        """Run one iteration starting now; returns its duration and books its energy."""
        self.settle(now_s)
        first_clock = self.clock_mhz
        whole_s = latency_s(first_clock)
        if self.pending_mhz is None or self.pending_at_s >= now_s + whole_s:
            self._account(first_clock, whole_s)
            return whole_s
        head_s = self.pending_at_s - now_s
        second_clock = self.pending_mhz
        tail_s = (1.0 - head_s / whole_s) * latency_s(second_clock) if whole_s > 0 else 0.0
        self._account(first_clock, head_s)
        self._account(second_clock, tail_s)
        self._apply_pending()
        return head_s + tail_s

    def idle_energy_j(self, horizon_s: float) -> float:
        """Energy of the time not spent on iterations up to ``horizon_s``."""
        return physics.idle_energy_j(self.profile, max(0.0, horizon_s - self.busy_s))
