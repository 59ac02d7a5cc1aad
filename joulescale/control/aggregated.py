"""A clock policy for an aggregated instance, whose every step mixes prefill chunks and decodes.

The registry's policies decide per phase: a prefill controller holds TTFT, a decode controller
TPOT. An aggregated instance has one clock for both, so it runs one controller of each phase,
each on the observation of its own phase built from the same scrape, and applies the stricter
decision: the higher clock (an urgent one wins a tie). Each controller picks the lowest clock
that its own SLO allows, and a step only gets faster with the clock, so the higher of the two
honours both the TTFT and the TPOT constraint as each controller sees it. Static policies give
the same clock to both and so run unchanged.

The prefill controller predicts with a ``MixedStepPredictor``: every step that carries a prompt
chunk also runs the instance's decodes, so it is told the decode load of each scrape first.
"""

from __future__ import annotations

from joulescale.control.mixed_step import MixedStepPredictor
from joulescale.control.policy import ClockDecision, ClockPolicy
from joulescale.engines.observation import Observation


def stricter(first: ClockDecision, second: ClockDecision) -> ClockDecision:
    """The decision with the higher clock; at the same clock the urgent one."""
    if first.sm_clock_mhz != second.sm_clock_mhz:
        return first if first.sm_clock_mhz > second.sm_clock_mhz else second
    return second if second.urgent and not first.urgent else first


class AggregatedPolicy:
    """Two controllers of one policy, one per phase, on one instance's clock."""

    __slots__ = ("_latest", "decode", "mixed", "name", "prefill")

    def __init__(self, prefill: ClockPolicy, decode: ClockPolicy, mixed: MixedStepPredictor | None = None) -> None:
        """``mixed``: the prefill controller's predictor, told the decode load before it decides."""
        self.prefill = prefill
        self.decode = decode
        self.mixed = mixed
        self.name = decode.name
        self._latest: dict[str, ClockDecision] = {}

    def _observe_decodes(self, decode: Observation) -> None:
        if self.mixed is not None:
            self.mixed.observe_decodes(decode.running_requests, decode.context_tokens)

    def decide_pair(self, prefill: Observation, decode: Observation) -> ClockDecision:
        """Both controllers decide on the same scrape (one observation per phase); the stricter wins."""
        self._observe_decodes(decode)
        self._latest["prefill"] = self.prefill.decide(prefill)
        self._latest["decode"] = self.decode.decide(decode)
        return stricter(self._latest["prefill"], self._latest["decode"])

    def decide(self, observation: Observation) -> ClockDecision:
        """One phase's observation: that controller decides; the stricter of both latest decisions."""
        if observation.phase == "decode":
            self._observe_decodes(observation)
        side = self.prefill if observation.phase == "prefill" else self.decode
        self._latest[observation.phase] = decision = side.decide(observation)
        other = self._latest.get("decode" if observation.phase == "prefill" else "prefill")
        return decision if other is None else stricter(decision, other)
