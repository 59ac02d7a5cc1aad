"""VoltanaLLM's EcoFreq (docs/policies.md, "voltana"), as a reproducible baseline.

Per iteration, the lowest clock of a short list whose predicted latency fits the SLO budget
(TTFT: minus the longest wait already spent by the batch's requests); f_max whenever
requests wait or the token rate exceeds a threshold; the lowest clock after a few seconds
without work. Offline predictor only. The margin is applied as SLO x (1 - margin), like the
other policies, so that comparisons run at the same target.
"""

from __future__ import annotations

from joulescale.control.clocks import levels_mhz, snap_up_mhz
from joulescale.control.context import PolicyContext
from joulescale.control.decode_common import decode_batch
from joulescale.control.policy import ClockDecision, DecisionReason
from joulescale.control.tracking import PromptLengthEstimate
from joulescale.engines.observation import Observation

_DEFAULT_LEVELS = 5
_DEFAULT_LOW_SHARE = 0.7
"""VoltanaLLM's A100 list {1005..1410} MHz spans about 0.7..1.0 of f_max."""


class VoltanaPolicy:
    name = "voltana"

    def __init__(self, context: PolicyContext) -> None:
        self.context = context
        allowed = context.allowed_mhz
        self.top_mhz = allowed[-1]
        if context.settings.voltana.clocks_mhz:
            self.clocks_mhz = tuple(sorted({snap_up_mhz(allowed, f) for f in context.settings.voltana.clocks_mhz}))
        else:
            self.clocks_mhz = levels_mhz(allowed, _DEFAULT_LEVELS, _DEFAULT_LOW_SHARE * allowed[-1])
        self.floor_mhz = allowed[0]
        self.predictor = context.offline_predictor()
        self._prompt = PromptLengthEstimate(context.settings.prefill.default_prompt_tokens)
        self._last_work_s: float | None = None

    def decide(self, observation: Observation) -> ClockDecision:
        if observation.phase == "prefill":
            self._prompt.update(observation)
        if observation.iterations_delta > 0:
            # Steps ended, so the engine worked, though gauges published at step ends may show it idle.
            self._last_work_s = observation.now_s
        if observation.idle:
            idle_for = None if self._last_work_s is None else observation.now_s - self._last_work_s
            if idle_for is None or idle_for >= self.context.settings.voltana.idle_s:
                return ClockDecision(self.floor_mhz, DecisionReason.IDLE)
            return ClockDecision(snap_up_mhz(self.clocks_mhz, observation.sm_clock_mhz), DecisionReason.IDLE)
        self._last_work_s = observation.now_s
        if observation.waiting_requests > 0 or self._rate_exceeded(observation):
            return ClockDecision(self.top_mhz, DecisionReason.QUEUE_PRESSURE, urgent=True)
        if observation.phase == "decode":
            batch_size, context_tokens = decode_batch(observation)
            budget_s = self.context.tpot_budget_s

            def latency(clock_mhz: int) -> float:
                return self.predictor.decode_s(batch_size, context_tokens, clock_mhz)

        else:
            tokens, squared = self._prefill_batch(observation)
            budget_s = self.context.ttft_budget_s - self._oldest_wait_s(observation)

            def latency(clock_mhz: int) -> float:
                return self.predictor.prefill_s(tokens, squared, clock_mhz)

        for clock in self.clocks_mhz:
            predicted = latency(clock)
            if predicted <= budget_s:
                return ClockDecision(
                    clock, DecisionReason.SLO_FIT, clock > observation.sm_clock_mhz, predicted
                )
        return ClockDecision(self.top_mhz, DecisionReason.SLO_AT_RISK, True, latency(self.top_mhz))

    def _rate_exceeded(self, observation: Observation) -> bool:
        threshold = self.context.settings.voltana.max_tokens_per_s
        if threshold is None or observation.interval_s <= 0:
            return False
        tokens = observation.prompt_tokens_delta + observation.generation_tokens_delta
        return tokens / observation.interval_s > threshold

    def _prefill_batch(self, observation: Observation) -> tuple[int, float]:
        """Tokens and squared tokens of the batch in flight (rich queue, gauge, or estimate)."""
        budget = self.context.token_budget
        if observation.queue:
            tokens, squared = 0, 0.0
            for prompt in observation.queue:
                chunk = min(prompt.prompt_tokens, budget - tokens)
                tokens += chunk
                squared += chunk * chunk
                if tokens >= budget:
                    break
            return tokens, squared
        mean = max(1.0, self._prompt.tokens)
        tokens = observation.context_tokens or round(observation.running_requests * mean)
        tokens = max(1, min(budget, tokens))
        return tokens, tokens * min(float(tokens), mean)

    @staticmethod
    def _oldest_wait_s(observation: Observation) -> float:
        if observation.queue:
            return max(0.0, observation.now_s - observation.queue[0].arrival_s)
        return observation.oldest_wait_s or 0.0
