"""JouleScale's decode step: the lowest clock that fits TPOT plus banked slack, with an
optional floor at the batch's least-energy clock after idle gaps (docs/policies.md)."""

from __future__ import annotations

from joulescale.control.context import PolicyContext
from joulescale.control.decode_common import decode_batch, kv_pressure
from joulescale.control.online import OnlineCorrection
from joulescale.control.policy import ClockDecision, DecisionReason
from joulescale.control.predictor import LatencyPredictor, ProfilePredictor
from joulescale.control.search import lowest_energy_index, lowest_feasible_index
from joulescale.control.slack import SlackBank, rich_decode_budget_s
from joulescale.control.tracking import Expectation, IterationTracker, Outcome
from joulescale.engines.observation import Observation
from joulescale.profiles import physics

_ENERGY_CACHE_LIMIT = 8192
_CONTEXT_BUCKET_TOKENS = 2048
_PRECOMPUTED_BATCH_SIZES = 512
_BUSY_SHARE = 0.9
"""Below this busy share of an interval the decode instance counts as having idle gaps."""
_MAX_STRETCH = 2.0
"""The slack budget never exceeds this multiple of the target (bounds a single slow token)."""


class JouleScaleDecode:
    def __init__(
        self,
        context: PolicyContext,
        offline: LatencyPredictor,
        predictor: OnlineCorrection,
        iterations: IterationTracker,
    ) -> None:
        self.context = context
        self.allowed_mhz = context.allowed_mhz
        self.top_mhz = self.allowed_mhz[-1]
        self.offline = offline
        self.predictor = predictor
        self._iterations = iterations
        self._bank = SlackBank(
            context.settings.decode.slack_bank_cap_tokens, context.settings.decode.slack_bank_decay, context.settings.decode.slack_spend_tokens
        )
        self._last_idle_s: float | None = None
        self._energy_index: dict[tuple[int, int], int] = {}
        self._energy_hint: int | None = None
        # The profile physics scales t(f_max) by a factor of f and B only, so its least-energy
        # clock does not depend on K: one entry per batch size, precomputed when used.
        self._shape_only = isinstance(offline, ProfilePredictor)
        if self._shape_only and context.settings.joulescale.decode_idle_window_s is not None:
            for batch_size in range(1, _PRECOMPUTED_BATCH_SIZES + 1):
                self._lowest_energy_index(batch_size, 0)

    def decide(
        self, observation: Observation, current_mhz: int, mispredicted: Outcome | None
    ) -> ClockDecision:
        """``mispredicted``: the last iteration's outcome when it ran slower than the tolerance."""
        target_s = self.context.tpot_budget_s
        self._bank.update(observation, target_s)
        if observation.idle or _has_gaps(observation):
            self._last_idle_s = observation.now_s
        if observation.idle:
            self._iterations.forget()
            return ClockDecision(current_mhz, DecisionReason.IDLE)
        if kv_pressure(observation, self.context):
            self._iterations.forget()
            return ClockDecision(self.top_mhz, DecisionReason.KV_PRESSURE, urgent=True)
        batch_size, context_tokens = decode_batch(observation)
        if observation.decoding:
            budget_s = rich_decode_budget_s(
                observation.decoding, target_s, self.context.settings.decode.slack_spend_tokens, _MAX_STRETCH * target_s
            )
        else:
            budget_s = min(self._bank.budget_s(target_s), _MAX_STRETCH * target_s)

        slo_budget_s = budget_s
        budget_s *= _kv_budget_share(observation.kv_cache_usage, self.context)

        def latency(clock_mhz: int) -> float:
            return self.predictor.decode_s(batch_size, context_tokens, clock_mhz)

        def decision(clock_mhz: int, reason: DecisionReason, urgent: bool) -> ClockDecision:
            base_s = self.offline.decode_s(batch_size, context_tokens, clock_mhz)
            predicted_s = base_s * self.predictor.factor("decode", clock_mhz)
            self._iterations.expect(
                Expectation(clock_mhz, predicted_s, base_s, slo_budget_s)
            )
            return ClockDecision(clock_mhz, reason, urgent, predicted_s)

        if mispredicted is not None and mispredicted.measured_s > mispredicted.expectation.budget_s:
            return decision(self.top_mhz, DecisionReason.MISPREDICTION_GUARD, True)
        window = self.context.settings.joulescale.decode_idle_window_s
        gappy = (
            window is not None
            and self._last_idle_s is not None
            and observation.now_s - self._last_idle_s <= window
        )
        floor = self._lowest_energy_index(batch_size, context_tokens) if gappy else 0
        if latency(self.allowed_mhz[floor]) <= budget_s:
            chosen = floor
        else:
            feasible = lowest_feasible_index(self.allowed_mhz, latency, budget_s, start=floor + 1)
            if feasible is None:
                return decision(self.top_mhz, DecisionReason.SLO_AT_RISK, True)
            chosen = feasible
        if gappy and chosen == floor:
            reason = DecisionReason.ENERGY_OPTIMAL
        else:
            reason = DecisionReason.SLACK_SPENT if slo_budget_s > target_s else DecisionReason.SLO_FIT
        clock = self.allowed_mhz[chosen]
        urgent = clock > observation.sm_clock_mhz and latency(observation.sm_clock_mhz) > budget_s
        return decision(clock, reason, urgent)

    def _lowest_energy_index(self, batch_size: int, context_tokens: int) -> int:
        """Clock index of least energy above idle for the batch, under the offline model (cached)."""
        key = (batch_size, 0 if self._shape_only else context_tokens // _CONTEXT_BUCKET_TOKENS)
        index = self._energy_index.get(key)
        if index is None:
            profile = self.context.profile
            tp, idle = profile.tensor_parallel_size, profile.idle_power_watts

            def energy_j(clock_mhz: int) -> float:
                watts = tp * (physics.busy_power_watts(profile, "decode", clock_mhz, batch_size) - idle)
                return watts * self.offline.decode_s(batch_size, context_tokens, clock_mhz)

            index = lowest_energy_index(self.allowed_mhz, energy_j, self._energy_hint)
            self._energy_hint = index
            if len(self._energy_index) >= _ENERGY_CACHE_LIMIT:
                self._energy_index.clear()
            self._energy_index[key] = index
        return index


def _has_gaps(observation: Observation) -> bool:
    """Metrics-only sign of idle gaps: the engine was busy for clearly less than the interval."""
    mean_s = observation.mean_iteration_s
    if mean_s is None or observation.interval_s <= 0 or observation.iterations_delta <= 0:
        return False
    return observation.iterations_delta * mean_s < _BUSY_SHARE * observation.interval_s


def _kv_budget_share(kv_usage: float, context: PolicyContext) -> float:
    """1 below the soft KV usage, falling linearly to the tight share at the hard guard."""
    soft, guard = context.settings.joulescale.kv_soft_usage, context.settings.decode.kv_guard_usage
    if kv_usage <= soft or guard <= soft:
        return 1.0
    progress = min(1.0, (kv_usage - soft) / (guard - soft))
    return 1.0 - progress * (1.0 - context.settings.joulescale.kv_tight_share)
