"""The clock a JouleScale prefill instance waits at between batches, and how fast it can react.

Idle power does not depend on the clock (ALGORITHMS.md 1), so waiting at a high clock is free;
but a short batch is over before the policy sees it and the new clock settles, so it runs
entirely at the waiting clock. The ready clock is therefore the lowest clock from which a lone
long prompt still meets its TTFT once the policy has seen it and raised the clock to the top.
"""

from __future__ import annotations

from joulescale.control.context import PolicyContext
from joulescale.control.observation import Observation
from joulescale.control.online import OnlineCorrection
from joulescale.control.predictor import LatencyPredictor
from joulescale.control.prefill_clocks import lone_prompt_mhz
from joulescale.control.tracking import PromptLengthQuantile

READY_MIN_PROMPTS = 20
"""Prompts seen before the ready clock trusts their quantile: a few short prompts say little
about the long ones to come, so a fresh instance is ready for the engine's batch budget."""
DEFAULT_SCRAPE_INTERVAL_S = 0.1
"""Assumed until a scrape interval is observed: the slowest scrape rate the agent supports (10 Hz)."""
_MAX_SCRAPE_INTERVAL_S = 0.2
_INTERVAL_WEIGHT = 0.2


class ReactionTime:
    """How long a batch runs before a clock the policy picks for it has settled.

    Engine hook: the policy decides as the batch starts, so only the settle time. Metrics-only:
    the batch is seen at the next scrape, up to one scrape interval later (the interval is
    learnt from the observations, capped, so one stalled scrape does not inflate it).
    """

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self.scrape_interval_s = DEFAULT_SCRAPE_INTERVAL_S

    def update(self, observation: Observation) -> None:
        if observation.queue is None and observation.interval_s > 0:
            sample = min(observation.interval_s, _MAX_SCRAPE_INTERVAL_S)
            self.scrape_interval_s += _INTERVAL_WEIGHT * (sample - self.scrape_interval_s)

    def seconds(self, observation: Observation) -> float:
        if observation.queue is not None:
            return self.settle_s
        return self.settle_s + self.scrape_interval_s


class ReadyClock:
    """The lowest clock that serves a lone prompt of the ready quantile of recent lengths (until
    enough were seen, of the engine's batch budget) within TTFT when raised to the top after the
    reaction time; at least ``floor_mhz`` (the steady clock)."""

    def __init__(
        self,
        context: PolicyContext,
        offline: LatencyPredictor,
        predictor: OnlineCorrection,
        lengths: PromptLengthQuantile,
        floor_mhz: int,
    ) -> None:
        self.context = context
        # The learnt correction may slow the model down, never speed it up: a lone long prompt
        # has no later batch to catch up in.
        self._predictors: tuple[LatencyPredictor, ...] = (offline, predictor)
        self._version = predictor
        self._lengths = lengths
        self._floor_mhz = floor_mhz
        self._cached: tuple[tuple[int, int, float], int] | None = None

    def mhz(self, reaction_s: float) -> int:
        long = self._lengths.tokens_at(self.context.joulescale_ready_quantile, READY_MIN_PROMPTS)
        tokens = self.context.max_batch_tokens if long is None else long
        key = (tokens, self._version.version, round(reaction_s, 2))
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        ready = max(
            self._floor_mhz,
            lone_prompt_mhz(self.context.allowed_mhz, self._predictors, tokens, self.context.ttft_budget_s,
                            raised_after_s=key[2]),
        )
        self._cached = (key, ready)
        return ready
