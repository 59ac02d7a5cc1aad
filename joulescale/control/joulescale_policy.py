"""JouleScale's default policy: everything BiScale and EcoFreq do, plus what saves more.

Decode (joulescale_decode): budget = TPOT x (1 - margin) plus banked slack (per request in the
rich view, from measured iteration times otherwise); the energy-optimal clock among those that
fit it. While the instance is continuously busy the batch grows as iterations slow down, so
energy per token follows power and the lowest fitting clock is the cheapest (measured in the
twin); after idle gaps (optional, ``decode_idle_window_s``) the clock stays at or above the
batch's least-energy clock above idle power (energy per iteration is U-shaped in the clock).
f_max under KV pressure, when even f_max misses, and after an iteration that was both
mispredicted and over budget.

Prefill (joulescale_prefill): at least the steady clock (the top of the flat bottom of energy
above idle); MPC over [steady, f_max] with a price-on-time (Lagrangian) solver, the batch in
flight planned apart, waiting prompts at a high quantile of recent prompt lengths, the clock
settle time kept back from every TTFT budget; f_max when the SLO is at risk, held until the
queue drains; between batches a ready clock that serves a lone long prompt; the misprediction
guard.

Both phases learn an online latency correction from the iterations they predicted.
"""

from __future__ import annotations

from joulescale.control.clocks import snap_up_mhz
from joulescale.control.context import PolicyContext
from joulescale.control.joulescale_decode import JouleScaleDecode
from joulescale.control.joulescale_prefill import JouleScalePrefill
from joulescale.control.online import OnlineCorrection
from joulescale.control.policy import ClockDecision
from joulescale.control.tracking import ClockTracker, IterationTracker, Outcome
from joulescale.engines.observation import Observation


class JouleScalePolicy:
    name = "joulescale"

    def __init__(self, context: PolicyContext) -> None:
        self.context = context
        self.allowed_mhz = context.allowed_mhz
        offline = context.offline_predictor()
        self.predictor = OnlineCorrection(offline, context.settings.correction)
        self._clocks = ClockTracker(context.profile.clock_settle_ms / 1000.0)
        self._iterations = IterationTracker()
        self.decode = JouleScaleDecode(context, offline, self.predictor, self._iterations)
        self.prefill = JouleScalePrefill(context, offline, self.predictor, self._iterations)

    def decide(self, observation: Observation) -> ClockDecision:
        self._clocks.update(observation)
        outcome = self._iterations.outcome(observation, self._clocks)
        if outcome is not None:
            expected = outcome.expectation
            self.predictor.observe(
                observation.phase, expected.sm_clock_mhz, expected.base_predicted_s, outcome.measured_s
            )
        mispredicted = outcome if outcome is not None and self._slower_than_predicted(outcome) else None
        current_mhz = snap_up_mhz(self.allowed_mhz, observation.sm_clock_mhz)
        if observation.phase == "decode":
            return self.decode.decide(observation, current_mhz, mispredicted)
        return self.prefill.decide(observation, current_mhz, mispredicted is not None)

    def _slower_than_predicted(self, outcome: Outcome) -> bool:
        return outcome.measured_s > outcome.expectation.predicted_s * (
            1 + self.context.settings.prefill.misprediction_tolerance
        )
