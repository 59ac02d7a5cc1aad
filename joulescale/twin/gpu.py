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
from joulescale.profiles.settle import ClockChange, WorkPlan, plan_work, request_clock


def _no_latency_s(sm_clock_mhz: int) -> float:
    return 0.0


class SimGpuGroup:
    """The tensor-parallel GPUs of one instance, which always share one clock (docs/policies.md, "Actuation").

    The running iteration is kept as a ``WorkPlan`` (joulescale.profiles.settle): a head at the
    clock in force and, when a pending clock settles before the end, a tail at that clock. The
    plan is booked when made; a request that changes it unbooks the part after now and books
    the new plan (``retimes`` counts those)."""

    __slots__ = (
        "_batch",
        "_latency_s",
        "_plan_now",
        "_power_watts",
        "_start_s",
        "_step_power_watts",
        "_tp",
        "busy_energy_j",
        "busy_log",
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
        self._plan_now = WorkPlan(0.0, 0.0, initial_mhz, 0.0, 0.0)
        self.busy_log: list[tuple[float, float, int, float]] | None = None
        """When a list: every busy segment ``(start_s, duration_s, sm_clock_mhz, watts per GPU)``, for tests that
        compare energy over a window (off by default: the twin does not pay for it)."""

    @property
    def target_mhz(self) -> int:
        return self.pending_mhz if self.pending_mhz is not None else self.clock_mhz

    def request(self, now_s: float, sm_clock_mhz: int) -> None:
        """Ask for a clock; it is in force ``settle_s`` later (the core's settle rule), retiming a
        running iteration."""
        self.settle(now_s)
        if sm_clock_mhz == self.target_mhz:
            return
        self.clock_changes += 1
        end_s = self.end_s
        # A planned switch still ahead is dropped (the pending clock is replaced or cancelled).
        replan = now_s < end_s and now_s < self._plan_now.switch_s < end_s
        pending = ClockChange(self.clock_mhz, self.target_mhz, self.pending_at_s)
        change = request_clock(pending, self.clock_mhz, sm_clock_mhz, now_s, self.settle_s)
        if change.target_mhz == self.clock_mhz:
            self.pending_mhz = None
        else:
            self.pending_mhz = change.target_mhz
            self.pending_at_s = change.effective_at_s
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
        self.busy_energy_j += self._tp * self._step_watts(sm_clock_mhz) * duration_s
        self.busy_s += duration_s
        self.time_at_clock_s[sm_clock_mhz] = self.time_at_clock_s.get(sm_clock_mhz, 0.0) + duration_s
        key = (sm_clock_mhz, self._batch)
        self.time_at_clock_and_batch_s[key] = self.time_at_clock_and_batch_s.get(key, 0.0) + duration_s

    def _step_watts(self, sm_clock_mhz: int) -> float:
        """One GPU's power over the running iteration at a clock."""
        step_power = self._step_power_watts
        return self.power_watts(sm_clock_mhz, self._batch) if step_power is None else step_power(sm_clock_mhz)

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
        plan = plan_work(from_s, work, self.clock_mhz, self.pending_mhz, self.pending_at_s, self._latency_s)
        self._plan_now = plan
        self._account(plan.head_mhz, plan.head_s)
        if plan.tail_s:
            self._account(plan.tail_mhz, plan.tail_s)
        if self.busy_log is not None:
            self.busy_log.extend((start_s, duration_s, mhz, self._step_watts(mhz))
                                 for start_s, duration_s, mhz in plan.segments())
        self.end_s = plan.end_s
        return plan.head_s + plan.tail_s

    def _retime(self, now_s: float) -> None:
        """Replan the running iteration from ``now_s``: unbook what the old plan put after now,
        then run the work left under the new pending clock."""
        plan = self._plan_now
        if now_s < plan.switch_s:  # still in the head (the switch, if any, is ahead)
            self._account(plan.head_mhz, (now_s - plan.from_s) - plan.head_s)
            if plan.tail_s:
                self._account(plan.tail_mhz, -plan.tail_s)
        else:
            self._account(plan.tail_mhz, (now_s - plan.switch_s) - plan.tail_s)
        if self.busy_log is not None:
            self._cut_busy_log(plan, now_s)
        remaining_s = self._plan(now_s, max(0.0, plan.work - plan.done_at(now_s)))
        self.iteration_s = (now_s - self._start_s) + remaining_s
        self.retimes += 1

    def _cut_busy_log(self, plan: WorkPlan, now_s: float) -> None:
        """Drop the old plan's busy time after ``now_s`` from the log."""
        log = self.busy_log
        assert log is not None
        del log[len(log) - len(plan.segments()):]
        for start_s, duration_s, mhz in plan.segments():
            if start_s < now_s:
                log.append((start_s, min(duration_s, now_s - start_s), mhz, self._step_watts(mhz)))

    def idle_energy_j(self, horizon_s: float) -> float:
        """Energy of the time not spent on iterations up to ``horizon_s``."""
        return physics.idle_energy_j(self.profile, max(0.0, horizon_s - self.busy_s))
