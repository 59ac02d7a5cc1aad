"""The simulated GPUs of one instance: applied clock, settle delay, and energy bookkeeping.

All physics (latency, power, power cap) comes from ``joulescale.profiles.physics``; this module
only decides which clock is in force during which part of an iteration. A clock requested at
``t`` takes effect at ``t + settle``, also in the middle of a running iteration: the work left
at that moment runs at the new clock, so the iteration's end moves (``end_s``) and its energy
is booked per segment, as on a real GPU where a clock change reaches the running kernels.
"""

from __future__ import annotations

from collections.abc import Callable

from joulescale.engines.observation import Phase
from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile

_NEVER_S = float("inf")


def _no_latency_s(sm_clock_mhz: int) -> float:
    return 0.0


class SimGpuGroup:
    """The tensor-parallel GPUs of one instance, which always share one clock (docs/policies.md, "Actuation").

    The running iteration is kept as a plan from ``_from_s`` for a fraction ``_work`` of its
    work: a head at ``_head_mhz`` and, when a pending clock settles before the end, a tail at
    ``_tail_mhz`` from ``_switch_s``. The plan is booked when made; a request that changes it
    unbooks the part after now and books the new plan (``retimes`` counts those)."""

    __slots__ = (
        "_batch",
        "_from_s",
        "_head_latency_s",
        "_head_mhz",
        "_head_s",
        "_latency_s",
        "_power_watts",
        "_start_s",
        "_step_power_watts",
        "_switch_s",
        "_tail_latency_s",
        "_tail_mhz",
        "_tail_s",
        "_tp",
        "_work",
        "busy_energy_j",
        "busy_s",
        "clock_changes",
        "clock_mhz",
        "clock_trace",
        "end_s",
        "iteration_s",
        "pending_at_s",
        "pending_mhz",
        "phase",
        "profile",
        "retimes",
        "settle_s",
        "time_at_clock_and_batch_s",
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
        self.retimes = 0
        """Requests that moved the end of a running iteration."""
        self.time_at_clock_s: dict[int, float] = {}
        self.time_at_clock_and_batch_s: dict[tuple[int, int], float] = {}
        """Busy time per (clock, sequences in the step): what the energy integrates power over."""
        self.clock_trace: list[tuple[float, int]] = [(0.0, initial_mhz)]
        self.end_s = 0.0
        """When the running (or last) iteration ends."""
        self.iteration_s = 0.0
        """Duration of the running (or last) iteration, retimes included."""
        self._power_watts: dict[tuple[int, int], float] = {}
        self._batch = 1
        """Sequences in the running (or last) iteration: its power depends on them."""
        self._tp = profile.tensor_parallel_size
        self._latency_s: Callable[[int], float] = _no_latency_s
        self._step_power_watts: Callable[[int], float] | None = None
        """The running step's own power at a clock (an aggregated step mixes phases); None: the phase's."""
        self._start_s = 0.0
        self._from_s = 0.0
        self._work = 0.0
        self._head_mhz = initial_mhz
        self._head_s = 0.0
        self._head_latency_s = 0.0
        self._switch_s = _NEVER_S
        self._tail_mhz = initial_mhz
        self._tail_s = 0.0
        self._tail_latency_s = 0.0

    @property
    def target_mhz(self) -> int:
        return self.pending_mhz if self.pending_mhz is not None else self.clock_mhz

    def request(self, now_s: float, sm_clock_mhz: int) -> None:
        """Ask for a clock; it is in force ``settle_s`` later, retiming a running iteration."""
        self.settle(now_s)
        if sm_clock_mhz == self.target_mhz:
            return
        self.clock_changes += 1
        end_s = self.end_s
        # A planned switch still ahead is dropped (the pending clock is replaced or cancelled).
        replan = now_s < end_s and now_s < self._switch_s < end_s
        if sm_clock_mhz == self.clock_mhz:
            self.pending_mhz = None
        else:
            self.pending_mhz = sm_clock_mhz
            self.pending_at_s = now_s + self.settle_s
            replan = replan or (now_s < end_s and self.pending_at_s < end_s)
        if replan:
            self._retime(now_s)

    def settle(self, now_s: float) -> None:
        """Apply a pending clock whose settle time has passed."""
        if self.pending_mhz is not None and self.pending_at_s <= now_s:
            self._apply_pending()

    def _apply_pending(self) -> None:
        assert self.pending_mhz is not None
        self.clock_mhz = self.pending_mhz
        self.clock_trace.append((self.pending_at_s, self.clock_mhz))
        self.pending_mhz = None

    def power_watts(self, sm_clock_mhz: int, batch_size: int) -> float:
        key = (sm_clock_mhz, batch_size)
        cached = self._power_watts.get(key)
        if cached is None:
            cached = physics.busy_power_watts(self.profile, self.phase, sm_clock_mhz, batch_size)
            self._power_watts[key] = cached
        return cached

    def _account(self, sm_clock_mhz: int, duration_s: float) -> None:
        """Book (or, with a negative duration, unbook) busy time of the running iteration at one clock."""
        step_power = self._step_power_watts
        watts = self.power_watts(sm_clock_mhz, self._batch) if step_power is None else step_power(sm_clock_mhz)
        self.busy_energy_j += self._tp * watts * duration_s
        self.busy_s += duration_s
        self.time_at_clock_s[sm_clock_mhz] = self.time_at_clock_s.get(sm_clock_mhz, 0.0) + duration_s
        key = (sm_clock_mhz, self._batch)
        self.time_at_clock_and_batch_s[key] = self.time_at_clock_and_batch_s.get(key, 0.0) + duration_s

    def run(self, now_s: float, latency_s: Callable[[int], float], batch_size: int,
            power_watts: Callable[[int], float] | None = None) -> float:
        """Run one iteration of ``batch_size`` sequences starting now; returns its duration as
        planned now and books it. ``power_watts``: the iteration's power per GPU at a clock, when
        not the phase's (a mixed step of an aggregated instance)."""
        self.settle(now_s)
        self._latency_s = latency_s
        self._step_power_watts = power_watts
        self._batch = batch_size
        self._start_s = now_s
        duration_s = self._plan(now_s, 1.0)
        self.iteration_s = duration_s
        return duration_s

    def _plan(self, from_s: float, work: float) -> float:
        """Plan and book ``work`` (a fraction of the iteration) from ``from_s`` at the clock in
        force, switching to a pending clock that settles before the end; returns the time it takes."""
        head_mhz = self.clock_mhz
        head_latency_s = self._latency_s(head_mhz)
        whole_s = work * head_latency_s
        self._from_s = from_s
        self._work = work
        self._head_mhz = head_mhz
        self._head_latency_s = head_latency_s
        pending = self.pending_mhz
        if pending is None or self.pending_at_s >= from_s + whole_s:
            self._head_s = whole_s
            self._switch_s = _NEVER_S
            self._tail_s = 0.0
            self._account(head_mhz, whole_s)
            self.end_s = from_s + whole_s
            return whole_s
        head_s = self.pending_at_s - from_s
        tail_latency_s = self._latency_s(pending)
        tail_s = max(0.0, (work - head_s / head_latency_s) * tail_latency_s) if head_latency_s > 0 else 0.0
        self._head_s = head_s
        self._switch_s = self.pending_at_s
        self._tail_mhz = pending
        self._tail_s = tail_s
        self._tail_latency_s = tail_latency_s
        self._account(head_mhz, head_s)
        self._account(pending, tail_s)
        self.end_s = from_s + (head_s + tail_s)
        return head_s + tail_s

    def _retime(self, now_s: float) -> None:
        """Replan the running iteration from ``now_s``: unbook what the old plan put after now,
        then run the work left under the new pending clock."""
        elapsed_s = now_s - self._from_s
        head_s = self._head_s
        if now_s < self._switch_s:  # still in the head (the switch, if any, is ahead)
            done = elapsed_s / self._head_latency_s
            self._account(self._head_mhz, elapsed_s - head_s)
            if self._tail_s:
                self._account(self._tail_mhz, -self._tail_s)
        else:
            done = head_s / self._head_latency_s + (elapsed_s - head_s) / self._tail_latency_s
            self._account(self._tail_mhz, elapsed_s - head_s - self._tail_s)
        remaining_s = self._plan(now_s, max(0.0, self._work - done))
        self.iteration_s = (now_s - self._start_s) + remaining_s
        self.retimes += 1

    def idle_energy_j(self, horizon_s: float) -> float:
        """Energy of the time not spent on iterations up to ``horizon_s``."""
        return physics.idle_energy_j(self.profile, max(0.0, horizon_s - self.busy_s))
