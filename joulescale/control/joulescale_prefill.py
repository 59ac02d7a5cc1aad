"""JouleScale's prefill step (docs/policies.md): a steady clock on the flat bottom of the energy
curve while requests wait, the MPC raising it when deadlines need more, f_max held until the
queue drains once the SLO is at risk, and an idle clock ready for a lone long prompt."""

from __future__ import annotations

import bisect
import math
from dataclasses import replace

from joulescale.control.clocks import levels_mhz
from joulescale.control.context import PolicyContext
from joulescale.control.mpc import priced_plan
from joulescale.control.online import OnlineCorrection
from joulescale.control.policy import ClockDecision, DecisionReason
from joulescale.control.predictor import LatencyPredictor
from joulescale.control.prefill_clocks import prefill_steady_mhz
from joulescale.control.prefill_mpc import PrefillMpc, PrefillPlan
from joulescale.control.prefill_ready import ReactionTime, ReadyClock
from joulescale.control.tracking import (
    EndedBatches,
    Expectation,
    IterationTracker,
    PromptLengthEstimate,
    PromptLengthQuantile,
)
from joulescale.engines.observation import Observation

_PlanKey = tuple[object, ...]


class JouleScalePrefill:
    def __init__(
        self,
        context: PolicyContext,
        offline: LatencyPredictor,
        predictor: OnlineCorrection,
        iterations: IterationTracker,
    ) -> None:
        self.context = context
        self.top_mhz = context.allowed_mhz[-1]
        self.offline = offline
        self.predictor = predictor
        self._iterations = iterations
        self.steady_mhz = prefill_steady_mhz(context, offline, context.settings.joulescale.prefill_flat_tolerance)
        self._reserve_s = context.profile.clock_settle_ms / 1000.0
        self._mpc = PrefillMpc(
            context,
            predictor,
            levels_mhz(context.allowed_mhz, context.settings.joulescale.mpc_levels, self.steady_mhz),
            priced_plan,
            include_idle=context.settings.joulescale.prefill_idle_objective,
            reserve_s=self._reserve_s,
            separate_in_flight=True,
        )
        self._mean = PromptLengthEstimate(context.settings.prefill.default_prompt_tokens)
        self._long = PromptLengthQuantile(quantile=context.settings.joulescale.prompt_quantile)
        self._holding = False
        self._batch_seen_s: float | None = None
        self._cached: tuple[_PlanKey, PrefillPlan | None] | None = None
        self._reaction = ReactionTime(self._reserve_s)
        self._ended = EndedBatches()
        self._ready = ReadyClock(context, offline, predictor, self._long, self._ended, self.steady_mhz)

    @property
    def levels_mhz(self) -> tuple[int, ...]:
        return self._mpc.levels_mhz

    def _at_least_mhz(self, sm_clock_mhz: int) -> int:
        """The lowest allowed clock not below ``sm_clock_mhz`` (the top one when none is)."""
        index = bisect.bisect_left(self.context.allowed_mhz, sm_clock_mhz)
        return self.context.allowed_mhz[min(index, len(self.context.allowed_mhz) - 1)]

    def decide(self, observation: Observation, current_mhz: int, mispredicted: bool) -> ClockDecision:
        self._mean.update(observation)
        self._long.update(observation)
        self._track_batch(observation)
        self._reaction.update(observation)
        self._ended.update(observation)
        reaction_s = self._reaction.seconds(observation)
        plan = self._plan(observation)
        if plan is None:
            self._holding = False
            self._iterations.forget()
            # Below the ready clock a long prompt arriving now would miss its TTFT: an urgent
            # raise, so the governor's hold does not keep a low clock while idle (the engine hook
            # decides only at iteration boundaries, so nothing would raise it later).
            ready = self._ready_mhz(reaction_s, observation)
            return ClockDecision(ready, DecisionReason.IDLE, ready > observation.sm_clock_mhz)
        if plan.at_risk or mispredicted:
            self._holding = True
            reason = DecisionReason.SLO_AT_RISK if plan.at_risk else DecisionReason.MISPREDICTION_GUARD
            return self._decision(observation, plan, self.top_mhz, reason, True)
        if self._holding and observation.waiting_requests:
            # Back to a low clock after the hold time, a burst's tail would miss again.
            urgent = self.top_mhz > observation.sm_clock_mhz
            return self._decision(observation, plan, self.top_mhz, DecisionReason.QUEUE_PRESSURE, urgent)
        self._holding = False
        clock = max(self.steady_mhz, plan.sm_clock_mhz)
        if observation.queue is None and observation.running_requests:
            # Seen through scrapes, the batch in flight is often well under way: the clock chosen
            # now settles within it and carries on into the next batch.
            if plan.next_sm_clock_mhz and observation.waiting_requests:
                clock = max(clock, plan.next_sm_clock_mhz)
            elif not observation.waiting_requests:
                clock = self._in_flight_clock(observation, plan, clock, reaction_s)
            # A clock settles within the batch in flight, whose size the scrape does not tell:
            # while requests queue behind it, never slow it down.
            if observation.waiting_requests:
                clock = max(clock, self._at_least_mhz(observation.sm_clock_mhz))
        reason = DecisionReason.ENERGY_OPTIMAL if plan.energy_optimal else DecisionReason.SLO_FIT
        urgent = plan.current_misses and clock > observation.sm_clock_mhz
        return self._decision(observation, plan, clock, reason, urgent)

    def _decision(
        self,
        observation: Observation,
        plan: PrefillPlan,
        clock_mhz: int,
        reason: DecisionReason,
        urgent: bool,
    ) -> ClockDecision:
        base_s = self.offline.prefill_s(plan.batch_tokens, plan.squared_tokens, clock_mhz)
        predicted_s = base_s * self.predictor.factor("prefill", clock_mhz)
        self._iterations.expect(
            Expectation(clock_mhz, predicted_s, base_s, self.context.ttft_budget_s)
        )
        return ClockDecision(clock_mhz, reason, urgent, predicted_s)

    def _in_flight_clock(self, observation: Observation, plan: PrefillPlan, clock_mhz: int, reaction_s: float) -> int:
        """Metrics-only view, nothing waiting: the plan's clock for the batch in flight (its tokens
        from the KV usage, its deadline net of the time it has run), but the ready clock once the
        batch ends before a clock picked at the next scrape could settle, so that a lone long
        prompt arriving after it does not start low."""
        ready = self._ready_mhz(reaction_s)
        if clock_mhz >= ready or self._batch_seen_s is None or observation.context_tokens <= 0:
            # Without the KV gauge (an engine whose KV capacity the agent could not read) the
            # batch's size is a guess: a long prompt in flight must not be slowed on it.
            return max(clock_mhz, ready)
        elapsed_s = observation.now_s - self._batch_seen_s
        left_s = self.predictor.prefill_s(plan.batch_tokens, plan.squared_tokens, observation.sm_clock_mhz) - elapsed_s
        return ready if left_s < reaction_s else clock_mhz

    def _ready_mhz(self, reaction_s: float, observation: Observation | None = None) -> int:
        """The ready clock; where batches are seen only once done, the clock that keeps recent
        batches, their requests' queueing included, within the budget, and at a scrape that
        shows a step ended, at least the clock the batch that followed it needs."""
        if not math.isinf(reaction_s):
            return self._ready.mhz(reaction_s)
        ready = self._ready.blind_mhz()
        waited_s = self._ended.last_step_s
        if observation is None or observation.iterations_delta <= 0 or waited_s is None:
            return ready
        raised_after_s = observation.interval_s + self._reserve_s
        return max(ready, self._ready.successor_mhz(waited_s, observation.sm_clock_mhz, raised_after_s))

    def _estimate_tokens(self) -> float:
        long = self._long.tokens
        if long is None:
            return self._mean.tokens
        return max(self._mean.tokens, float(long))

    def _track_batch(self, observation: Observation) -> None:
        """Metrics-only view: when the batch in flight was first seen running (it started in the
        interval before), so its elapsed time is known to within a scrape period, from below."""
        if not observation.running_requests:
            self._batch_seen_s = None
        elif self._batch_seen_s is None or observation.iterations_delta > 0:
            self._batch_seen_s = observation.now_s

    def _unseen_prompt_tokens(self, observation: Observation, seen: PrefillPlan | None,
                              estimate: float) -> float | None:
        """Engine hook, a step running: the prompt length to leave its TTFT should one arrive
        unseen while the step runs, or None when the chance of one is within the SLO's miss share.

        A chance constraint at the SLO's own percentile p. Arrivals during the step are taken as
        Poisson at the rate the hook's arrival times show; the step lasts at most T, its time at
        the clock the plan without the arrival picks (never below the steady clock), since
        planning for the arrival can only raise it. A prompt longer than L then arrives unseen
        with probability 1 - exp(-rate x T x P(len > L)), at most 1 - p when
        P(len > L) <= -ln(p) / (rate x T): L is that quantile of recent prompts. Until the rate
        is known, the estimate every unseen prompt is planned with stands."""
        if observation.queue is None or not observation.running_requests or seen is None:
            return None
        rate = self._long.arrivals_per_s()
        if rate is None:
            return estimate
        slowest_mhz = max(self.steady_mhz, seen.sm_clock_mhz)
        step_s = self.predictor.prefill_s(seen.batch_tokens, seen.squared_tokens, slowest_mhz)
        expected = rate * step_s
        share = -math.log(self.context.slo.percentile / 100.0) / expected if expected > 0 else math.inf
        if share >= 1.0:
            return None
        tokens = self._long.tokens_at(1.0 - share)
        return estimate if tokens is None else float(tokens)

    def _plan(self, observation: Observation) -> PrefillPlan | None:
        """The MPC's plan, reused while nothing it depends on changed (scrapes repeat a lot)."""
        estimate = self._estimate_tokens()
        if observation.queue is not None:
            shape: object = observation.queue
        else:
            shape = (
                observation.running_requests,
                observation.waiting_requests,
                observation.context_tokens,
                observation.oldest_wait_s,
            )
        busy_s = observation.now_s if observation.running_requests or observation.waiting_requests else None
        key = (shape, observation.sm_clock_mhz, estimate, self.predictor.version, busy_s)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        elapsed_s = 0.0
        if observation.queue is None and self._batch_seen_s is not None:
            elapsed_s = observation.now_s - self._batch_seen_s
        # Engine hook: the policy decides only at scheduling calls, and the hook publishes no
        # arrival, so a prompt arriving while this step runs is unseen until the next call: the
        # step must leave such a prompt its TTFT, if one is likely enough to come (the metrics
        # view sees it at the next scrape).
        seen = self._mpc.plan(observation, estimate, in_flight_elapsed_s=elapsed_s)
        plan = seen
        unseen = self._unseen_prompt_tokens(observation, seen, estimate)
        if unseen is not None:
            plan = self._mpc.plan(observation, estimate, anticipate_arrival=True, in_flight_elapsed_s=elapsed_s,
                                  arrival_tokens=unseen)
            if plan is not None and plan.at_risk and seen is not None and not seen.at_risk:
                # Only the prompt that may arrive misses even at f_max: run this step at f_max, its
                # best chance, without the hold that an SLO at risk in the queue itself calls for.
                plan = replace(seen, sm_clock_mhz=self.top_mhz, energy_optimal=False)
        self._cached = (key, plan)
        return plan
