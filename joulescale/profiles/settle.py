"""When a requested SM clock takes effect, and what a GPU runs meanwhile (docs/profiles.md, "Physics").

One rule for every simulated GPU (the twin's and the agent's simulated backend that the
simulated engines read): a clock requested at ``t`` is in force from ``t + settle``; until then
the clock that was in force at ``t`` keeps running. A request that arrives while another is
still settling replaces it (its settle time starts again); one asking for the clock in force
cancels it. The change also reaches a running iteration: the work left at the switch runs at
the new clock, so the iteration's end moves (``plan_work``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

NEVER_S = float("inf")


@dataclass(frozen=True, slots=True)
class ClockChange:
    """The last clock request of a GPU: ``previous_mhz`` runs until ``effective_at_s``, then ``target_mhz``."""

    previous_mhz: int
    target_mhz: int
    effective_at_s: float

    def clock_at(self, now_s: float) -> int:
        return self.previous_mhz if now_s < self.effective_at_s else self.target_mhz


def request_clock(change: ClockChange | None, default_mhz: int, requested_mhz: int, now_s: float,
                  settle_s: float) -> ClockChange:
    """The change after asking for ``requested_mhz`` at ``now_s`` (``change`` None: the default clock runs)."""
    in_force = default_mhz if change is None else change.clock_at(now_s)
    if change is not None and requested_mhz == change.target_mhz:
        return change  # already in force or settling: its settle time does not start again
    if requested_mhz == in_force:
        return ClockChange(in_force, in_force, now_s)
    return ClockChange(in_force, requested_mhz, now_s + settle_s)


@dataclass(frozen=True, slots=True)
class WorkPlan:
    """A fraction ``work`` of an iteration run from ``from_s``: ``head_s`` at ``head_mhz``, then, when a
    pending clock settles before the end, ``tail_s`` at ``tail_mhz`` from ``switch_s``."""

    from_s: float
    work: float
    head_mhz: int
    head_s: float
    head_latency_s: float
    """The whole iteration's latency at ``head_mhz``."""
    switch_s: float = NEVER_S
    tail_mhz: int = 0
    tail_s: float = 0.0
    tail_latency_s: float = 0.0

    @property
    def end_s(self) -> float:
        return self.from_s + self.head_s + self.tail_s

    def segments(self) -> tuple[tuple[float, float, int], ...]:
        """``(start_s, duration_s, sm_clock_mhz)`` of the busy time, in order."""
        head = (self.from_s, self.head_s, self.head_mhz)
        return (head, (self.switch_s, self.tail_s, self.tail_mhz)) if self.tail_s > 0.0 else (head,)

    def done_at(self, now_s: float) -> float:
        """The fraction of the whole iteration done from ``from_s`` to ``now_s``."""
        elapsed_s = now_s - self.from_s
        if now_s < self.switch_s:
            return elapsed_s / self.head_latency_s if self.head_latency_s > 0 else self.work
        done = self.head_s / self.head_latency_s if self.head_latency_s > 0 else 0.0
        if self.tail_latency_s > 0:
            done += (elapsed_s - self.head_s) / self.tail_latency_s
        return done


def plan_work(from_s: float, work: float, clock_mhz: int, pending_mhz: int | None, pending_at_s: float,
              latency_s: Callable[[int], float]) -> WorkPlan:
    """Run ``work`` (a fraction of an iteration whose latency at a clock is ``latency_s``) from ``from_s``
    at the clock in force, switching to ``pending_mhz`` when it settles before the end."""
    head_latency_s = latency_s(clock_mhz)
    whole_s = work * head_latency_s
    if pending_mhz is None or pending_at_s >= from_s + whole_s:
        return WorkPlan(from_s, work, clock_mhz, whole_s, head_latency_s)
    head_s = max(0.0, pending_at_s - from_s)
    tail_latency_s = latency_s(pending_mhz)
    left = work - head_s / head_latency_s if head_latency_s > 0 else 0.0
    tail_s = max(0.0, left * tail_latency_s)
    return WorkPlan(from_s, work, clock_mhz, head_s, head_latency_s, from_s + head_s, pending_mhz, tail_s,
                    tail_latency_s)
