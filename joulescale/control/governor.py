"""Clock actuation rules shared by the node agent and the twin (docs/policies.md, "Actuation").

The governor sits between a policy's decision and the GPU: it clamps to the allowed clocks,
changes only when the target differs, and holds a new clock for a minimum time unless the
decision is an urgent raise (an SLO emergency). One governor per tensor-parallel group: the
caller applies the returned clock to every GPU of the group. Deterministic; time is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from joulescale.control.clocks import allowed_clocks_mhz, snap_up_mhz
from joulescale.control.policy import ClockBounds, ClockDecision, DecisionReason

DEFAULT_MIN_HOLD_S = 0.1


@dataclass(frozen=True, slots=True)
class Actuation:
    """What to do with the GPUs of one TP group after a decision."""

    sm_clock_mhz: int
    """The clock the group should run at (unchanged when ``changed`` is False)."""
    changed: bool
    """True when the caller must set ``sm_clock_mhz`` on every GPU of the group now."""
    reason: DecisionReason
    """The decision's reason, or HOLD when the hold time kept the current clock."""


class ClockGovernor:
    """Applies 3.4 to one TP group's decisions; keeps the time of the last change."""

    def __init__(
        self,
        supported_mhz: Sequence[int],
        bounds: ClockBounds | None = None,
        min_hold_s: float = DEFAULT_MIN_HOLD_S,
    ) -> None:
        if min_hold_s < 0:
            raise ValueError("min_hold_s must not be negative")
        self.allowed_mhz = allowed_clocks_mhz(supported_mhz, bounds)
        self.min_hold_s = min_hold_s
        self._changed_at_s: float | None = None

    def clamp_mhz(self, target_mhz: float) -> int:
        """The allowed clock for a target: within the range, snapped up to a supported clock."""
        return snap_up_mhz(self.allowed_mhz, target_mhz)

    def apply(self, decision: ClockDecision, now_s: float, current_mhz: int) -> Actuation:
        """Turn a decision into an actuation given the group's current (read-back) clock."""
        target = self.clamp_mhz(decision.sm_clock_mhz)
        outside = current_mhz not in self.allowed_mhz
        if target == current_mhz:
            return Actuation(current_mhz, False, decision.reason)
        holding = self._changed_at_s is not None and now_s - self._changed_at_s < self.min_hold_s
        emergency_raise = decision.urgent and target > current_mhz
        if holding and not emergency_raise and not outside:
            return Actuation(current_mhz, False, DecisionReason.HOLD)
        self._changed_at_s = now_s
        return Actuation(target, True, decision.reason)

    def reset(self) -> None:
        """Forget the last change (after the clocks were reset to the device default)."""
        self._changed_at_s = None


def group_clock_mhz(readback_mhz: Sequence[int]) -> int:
    """The clock a TP group effectively runs at: its slowest GPU sets the pace."""
    if not readback_mhz:
        raise ValueError("a TP group has at least one GPU")
    return min(readback_mhz)
