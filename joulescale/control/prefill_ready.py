"""The clock a JouleScale prefill instance waits at between batches, and how fast it can react.

Idle power does not depend on the clock (docs/profiles.md, "Physics"), so waiting at a high clock is free;
but a short batch is over before the policy sees it and the new clock settles, so it runs
entirely at the waiting clock. The ready clock is therefore the lowest clock from which a lone
long prompt still meets its TTFT once the policy has seen it and raised the clock to the top;
when the engine's gauges never show a batch in flight, the clock that serves it alone.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque

from joulescale.control.context import PolicyContext
from joulescale.control.online import OnlineCorrection
from joulescale.control.predictor import LatencyPredictor
from joulescale.control.prefill_clocks import lone_prompt_mhz
from joulescale.control.search import lowest_feasible_index
from joulescale.control.tracking import EndedBatch, EndedBatches, PromptLengthQuantile
from joulescale.engines.observation import Observation

READY_MIN_PROMPTS = 20
"""Prompts seen before the ready clock trusts their quantile: a few short prompts say little
about the long ones to come, so a fresh instance is ready for the engine's batch budget."""
DEFAULT_SCRAPE_INTERVAL_S = 0.1
"""Assumed until a scrape interval is observed: the slowest scrape rate the agent supports (10 Hz)."""
_MAX_SCRAPE_INTERVAL_S = 0.2
_WORST_BATCHES = 4
_INTERVAL_WEIGHT = 0.2


class ReactionTime:
    """How long a batch runs before a clock the policy picks for it has settled.

    Engine hook: the policy decides as the batch starts, so only the settle time. Metrics-only:
    vLLM V1 and SGLang publish a prefill instance's gauges at step boundaries, so a batch that
    starts on an idle instance shows only once it is done: never in time. An engine whose gauges
    do show a batch in flight is seen at the next scrape, up to one scrape interval later (learnt
    from the observations, capped, so one stalled scrape does not inflate it).

    Gauges count as live only once a batch shows running with no step ended since a scrape that
    showed nothing running: under step-end gauges the running count rises only as a step ends.
    A running request at a step end (vLLM: the rest of a prompt longer than the token budget)
    says nothing about the next batch that starts on an idle instance.
    """

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self.scrape_interval_s = DEFAULT_SCRAPE_INTERVAL_S
        self.batches_visible = False
        """Whether the engine's gauges have shown a prefill batch in flight as it started."""
        self._nothing_running = False
        """The previous scrape showed no request running."""

    def update(self, observation: Observation) -> None:
        if observation.queue is not None:
            return
        # An aggregated instance's page never shows a prompt in flight: its running count is assumed.
        running = observation.running_requests > 0 and not observation.colocated
        if running and self._nothing_running and observation.iterations_delta == 0:
            self.batches_visible = True
        self._nothing_running = not running
        if observation.interval_s > 0:
            sample = min(observation.interval_s, _MAX_SCRAPE_INTERVAL_S)
            self.scrape_interval_s += _INTERVAL_WEIGHT * (sample - self.scrape_interval_s)

    def seconds(self, observation: Observation) -> float:
        if observation.queue is not None:
            return self.settle_s
        if not self.batches_visible:
            return math.inf
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
        ended: EndedBatches,
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
        self._blind: tuple[tuple[int, int], int] | None = None
        self._offline = offline
        self._ended = ended
        self._severity: deque[float] = deque(maxlen=ended.batches.maxlen)
        """Each ended batch's latency at the top clock plus its queueing, aligned with ``ended``."""
        self._severity_version = 0

    def mhz(self, reaction_s: float) -> int:
        long = self._lengths.tokens_at(self.context.settings.joulescale.ready_quantile, READY_MIN_PROMPTS)
        tokens = self.context.token_budget if long is None else long
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

    def blind_mhz(self) -> int:
        """Where a batch shows only once done, its clock is the one it started at: the lowest
        clock at which every recent batch would have met the budget, its requests' queueing
        included (none can be caught up, so the worst of the window counts, not a quantile); the
        engine's batch budget, alone, until enough were seen."""
        ended = self._ended
        key = (ended.version, self._version.version)
        if self._blind is not None and self._blind[0] == key:
            return self._blind[1]
        budget_s = self.context.ttft_budget_s
        clocks = self.context.allowed_mhz
        if len(ended.batches) < READY_MIN_PROMPTS:
            tokens = self.context.token_budget
            ready = lone_prompt_mhz(clocks, self._predictors, tokens, budget_s, raised_after_s=math.inf)
        else:
            worst = self._worst_batches()

            def worst_s(clock_mhz: int) -> float:
                return max(self._queued_at(b, clock_mhz)
                           + max(p.prefill_s(b.tokens, b.squared_tokens, clock_mhz) for p in self._predictors)
                           for b in worst)

            index = lowest_feasible_index(clocks, worst_s, budget_s)
            ready = clocks[-1 if index is None else index]
        ready = max(self._floor_mhz, ready)
        self._blind = (key, ready)
        return ready

    def _worst_batches(self) -> list[EndedBatch]:
        """The few batches that took longest at the top clock, queueing included: a batch's
        latency scales alike with the clock whatever its size, so the worst at any clock is
        among them, and the search does not price all 256 at every clock after every batch."""
        ended = self._ended
        batches = ended.batches
        fresh = min(ended.version - self._severity_version, len(batches))
        self._severity_version = ended.version
        top_mhz = self.context.allowed_mhz[-1]
        for batch in itertools.islice(batches, len(batches) - fresh, None):
            self._severity.append(self._queued_at(batch, top_mhz)
                                  + self._offline.prefill_s(batch.tokens, batch.squared_tokens, top_mhz))
        ranked = heapq.nlargest(_WORST_BATCHES, range(len(batches)), key=self._severity.__getitem__)
        return [batches[i] for i in ranked]

    def _queued_at(self, batch: EndedBatch, clock_mhz: int) -> float:
        """The batch's queueing had the step before it run at ``clock_mhz``: it queued behind a
        step at the clock then in force, whose time scales with the clock like any batch's."""
        if batch.queued_s <= 0.0 or batch.clock_mhz <= 0 or batch.clock_mhz == clock_mhz:
            return batch.queued_s
        offline = self._offline
        then_s = offline.prefill_s(batch.tokens, batch.squared_tokens, batch.clock_mhz)
        if then_s <= 0.0:
            return batch.queued_s
        return batch.queued_s * offline.prefill_s(batch.tokens, batch.squared_tokens, clock_mhz) / then_s

    def successor_mhz(self, waited_s: float, started_mhz: int, raised_after_s: float) -> int:
        """Blind, a step just ended after ``waited_s``: what arrived during it runs now in the
        batch that followed, at ``started_mhz``, having waited up to that long. The lowest clock
        that, settled ``raised_after_s`` into that batch, still serves a lone prompt of the ready
        quantile in it within the budget (the top clock when none does)."""
        long = self._lengths.tokens_at(self.context.settings.joulescale.ready_quantile, READY_MIN_PROMPTS)
        tokens = max(1, self.context.token_budget if long is None else long)
        squared = float(tokens * tokens)
        predictors = self._predictors
        started_s = max(p.prefill_s(tokens, squared, started_mhz) for p in predictors)

        def latency_s(clock_mhz: int) -> float:
            if started_s <= raised_after_s:
                return started_s
            at_clock_s = max(p.prefill_s(tokens, squared, clock_mhz) for p in predictors)
            return raised_after_s + (1.0 - raised_after_s / started_s) * at_clock_s

        clocks = self.context.allowed_mhz
        index = lowest_feasible_index(clocks, latency_s, self.context.ttft_budget_s - waited_s)
        return clocks[-1 if index is None else index]
