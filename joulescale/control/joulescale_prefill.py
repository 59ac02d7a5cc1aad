"""JouleScale's prefill step: priced MPC over the energy-sensible clocks, one anticipated
arrival, the settle time reserved, and a ready clock between batches (docs/policies.md)."""

from __future__ import annotations

from joulescale.control.clocks import levels_mhz
from joulescale.control.context import PolicyContext
from joulescale.control.mpc import priced_plan
from joulescale.control.observation import Observation
from joulescale.control.online import OnlineCorrection
from joulescale.control.policy import ClockDecision, DecisionReason
from joulescale.control.predictor import LatencyPredictor
from joulescale.control.prefill_mpc import PrefillMpc
from joulescale.control.search import lowest_energy_index
from joulescale.control.tracking import BatchSizeWindow, Expectation, IterationTracker, PromptLengthEstimate
from joulescale.profiles import physics


class JouleScalePrefill:
    def __init__(
        self,
        context: PolicyContext,
        offline: LatencyPredictor,
        predictor: OnlineCorrection,
        iterations: IterationTracker,
    ) -> None:
        self.context = context
        allowed = context.allowed_mhz
        self.top_mhz = allowed[-1]
        self.offline = offline
        self.predictor = predictor
        self._iterations = iterations
        self._mpc = PrefillMpc(
            context,
            predictor,
            levels_mhz(allowed, context.joulescale_mpc_levels, prefill_sweet_spot_mhz(context, offline)),
            priced_plan,
            include_idle=context.joulescale_prefill_idle_objective,
            reserve_s=context.profile.clock_settle_ms / 1000.0,
        )
        self._prompt = PromptLengthEstimate(context.default_prompt_tokens)
        self._batches = BatchSizeWindow()

    @property
    def levels_mhz(self) -> tuple[int, ...]:
        return self._mpc.levels_mhz

    def decide(self, observation: Observation, current_mhz: int, mispredicted: bool) -> ClockDecision:
        self._prompt.update(observation)
        self._batches.update(observation, self.context.max_batch_tokens)
        plan = self._mpc.plan(observation, self._prompt.tokens, anticipate_arrival=True)
        if plan is None:
            self._iterations.forget()
            return ClockDecision(self._ready_clock_mhz(observation, current_mhz), DecisionReason.IDLE)
        clock = self.top_mhz if plan.at_risk or mispredicted else plan.sm_clock_mhz
        if observation.queue is None and observation.running_requests:
            # Seen through scrapes, the batch in flight is usually past the point where a new
            # clock would settle within it: the decision is really for the next batch, which is
            # the queue's when requests wait and a typical large one arriving now otherwise.
            if plan.next_sm_clock_mhz and observation.waiting_requests:
                clock = max(clock, plan.next_sm_clock_mhz)
            elif not observation.waiting_requests:
                clock = max(clock, self._ready_clock_mhz(observation, current_mhz))
        base_s = self.offline.prefill_s(plan.batch_tokens, plan.squared_tokens, clock)
        predicted_s = base_s * self.predictor.factor("prefill", clock)
        self._iterations.expect(
            Expectation(clock, predicted_s, base_s, self.context.ttft_budget_s, observation.now_s)
        )
        if plan.at_risk or mispredicted:
            reason = DecisionReason.SLO_AT_RISK if plan.at_risk else DecisionReason.MISPREDICTION_GUARD
            return ClockDecision(clock, reason, True, predicted_s)
        reason = DecisionReason.ENERGY_OPTIMAL if plan.energy_optimal else DecisionReason.SLO_FIT
        urgent = plan.current_misses and clock > observation.sm_clock_mhz
        return ClockDecision(clock, reason, urgent, predicted_s)

    def _ready_clock_mhz(self, observation: Observation, current_mhz: int) -> int:
        """The clock the MPC would pick for the largest recent batch arriving now, so the next
        batch does not start at a clock chosen for a small one."""
        tokens = self._batches.typical_large_tokens()
        if tokens is None:
            return current_mhz
        ready = Observation(
            phase="prefill",
            now_s=observation.now_s,
            sm_clock_mhz=observation.sm_clock_mhz,
            running_requests=1,
            waiting_requests=0,
            kv_cache_usage=observation.kv_cache_usage,
            context_tokens=tokens,
            oldest_wait_s=0.0,
        )
        plan = self._mpc.plan(ready, self._prompt.tokens, anticipate_arrival=True)
        return current_mhz if plan is None else plan.sm_clock_mhz


def prefill_sweet_spot_mhz(context: PolicyContext, predictor: LatencyPredictor) -> float:
    """The lowest clock that is energy-optimal (above idle power) for some batch size: clocks
    below it are slower *and* costlier for every batch, so the MPC need not consider them."""
    profile = context.profile
    clocks = context.allowed_mhz
    idle_watts = profile.idle_power_watts
    best = float(clocks[-1])
    tokens = 128
    while tokens <= context.max_batch_tokens:

        def net_energy_j(clock_mhz: int, batch_tokens: int = tokens) -> float:
            watts = physics.busy_power_watts(profile, "prefill", clock_mhz) - idle_watts
            return watts * predictor.prefill_s(
                batch_tokens, float(batch_tokens * min(batch_tokens, 2048)), clock_mhz
            )

        best = min(best, clocks[lowest_energy_index(clocks, net_energy_j)])
        tokens *= 2
    return best
