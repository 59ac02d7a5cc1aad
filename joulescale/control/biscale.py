"""BiScale's fine-grained tier (docs/policies.md, "biscale"), as a reproducible baseline.

Decode: the lowest clock whose predicted iteration fits TPOT x (1 - margin), f_max under KV
pressure. Prefill: MPC over 7 levels spanning the allowed range, horizon 8, greedy descent
on busy energy, and the misprediction guard. Offline predictor only.
"""

from __future__ import annotations

from joulescale.control.clocks import levels_mhz, snap_up_mhz
from joulescale.control.context import PolicyContext
from joulescale.control.decode_common import decode_batch, kv_pressure
from joulescale.control.mpc import greedy_descent
from joulescale.control.policy import ClockDecision, DecisionReason
from joulescale.control.prefill_mpc import PrefillMpc
from joulescale.control.search import lowest_feasible_index
from joulescale.control.tracking import ClockTracker, Expectation, IterationTracker, PromptLengthEstimate
from joulescale.engines.observation import Observation


class BiScalePolicy:
    name = "biscale"

    def __init__(self, context: PolicyContext) -> None:
        self.context = context
        self.allowed_mhz = context.allowed_mhz
        self.top_mhz = self.allowed_mhz[-1]
        self.predictor = context.offline_predictor()
        self._mpc = PrefillMpc(
            context,
            self.predictor,
            levels_mhz(self.allowed_mhz, context.settings.biscale.mpc_levels),
            greedy_descent,
            include_idle=False,
        )
        self._clocks = ClockTracker(context.profile.clock_settle_ms / 1000.0)
        self._iterations = IterationTracker()
        self._prompt = PromptLengthEstimate(context.settings.prefill.default_prompt_tokens)

    def decide(self, observation: Observation) -> ClockDecision:
        self._clocks.update(observation)
        if observation.phase == "decode":
            return self._decode(observation)
        return self._prefill(observation)

    def _current(self, observation: Observation) -> int:
        return snap_up_mhz(self.allowed_mhz, observation.sm_clock_mhz)

    def _decode(self, observation: Observation) -> ClockDecision:
        if observation.idle:
            return ClockDecision(self._current(observation), DecisionReason.IDLE)
        if kv_pressure(observation, self.context):
            return ClockDecision(self.top_mhz, DecisionReason.KV_PRESSURE, urgent=True)
        batch_size, context_tokens = decode_batch(observation)
        budget_s = self.context.tpot_budget_s

        def latency(clock_mhz: int) -> float:
            return self.predictor.decode_s(batch_size, context_tokens, clock_mhz)

        index = lowest_feasible_index(self.allowed_mhz, latency, budget_s)
        if index is None:
            return ClockDecision(self.top_mhz, DecisionReason.SLO_AT_RISK, urgent=True)
        chosen = self.allowed_mhz[index]
        urgent = chosen > observation.sm_clock_mhz
        return ClockDecision(chosen, DecisionReason.SLO_FIT, urgent, latency(chosen))

    def _prefill(self, observation: Observation) -> ClockDecision:
        self._prompt.update(observation)
        outcome = self._iterations.outcome(observation, self._clocks)
        tolerance = self.context.settings.prefill.misprediction_tolerance
        guard = outcome is not None and outcome.measured_s > outcome.expectation.predicted_s * (1 + tolerance)
        plan = self._mpc.plan(observation, self._prompt.tokens)
        if plan is None:
            self._iterations.forget()
            return ClockDecision(self._current(observation), DecisionReason.IDLE)
        if plan.at_risk or guard:
            predicted = self.predictor.prefill_s(plan.batch_tokens, plan.squared_tokens, self.top_mhz)
            self._expect(observation, self.top_mhz, predicted)
            reason = DecisionReason.SLO_AT_RISK if plan.at_risk else DecisionReason.MISPREDICTION_GUARD
            return ClockDecision(self.top_mhz, reason, True, predicted)
        self._expect(observation, plan.sm_clock_mhz, plan.predicted_s)
        reason = DecisionReason.ENERGY_OPTIMAL if plan.energy_optimal else DecisionReason.SLO_FIT
        urgent = plan.current_misses and plan.sm_clock_mhz > observation.sm_clock_mhz
        return ClockDecision(plan.sm_clock_mhz, reason, urgent, plan.predicted_s)

    def _expect(self, observation: Observation, clock_mhz: int, predicted_s: float) -> None:
        self._iterations.expect(
            Expectation(clock_mhz, predicted_s, predicted_s, self.context.ttft_budget_s)
        )
