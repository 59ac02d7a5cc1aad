"""A fixed clock: static-max (DistServe) or static-best (one clock chosen offline per phase)."""

from __future__ import annotations

from joulescale.control.clocks import snap_up_mhz
from joulescale.control.context import PolicyContext
from joulescale.control.policy import ClockDecision, DecisionReason
from joulescale.engines.observation import Observation


class StaticPolicy:
    name = "static"

    def __init__(self, context: PolicyContext) -> None:
        allowed = context.allowed_mhz
        wanted = allowed[-1] if context.static_clock_mhz is None else context.static_clock_mhz
        self.sm_clock_mhz = snap_up_mhz(allowed, wanted)
        self._decision = ClockDecision(self.sm_clock_mhz, DecisionReason.STATIC)

    def decide(self, observation: Observation) -> ClockDecision:
        return self._decision
