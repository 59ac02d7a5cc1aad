"""Small per-instance memories a policy keeps between observations."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from joulescale.engines.observation import Observation


class ClockTracker:
    """When the applied clock last changed, to tell iterations run at a settled clock."""

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._clock_mhz: int | None = None
        self._since_s = float("-inf")

    def update(self, observation: Observation) -> None:
        if observation.sm_clock_mhz != self._clock_mhz:
            if self._clock_mhz is not None:
                self._since_s = observation.now_s
            self._clock_mhz = observation.sm_clock_mhz

    def settled_for(self, started_s: float) -> bool:
        """Whether an iteration that started at ``started_s`` ran entirely at the current clock."""
        return started_s >= self._since_s + self.settle_s


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the policy predicted for the next iteration when it decided."""

    sm_clock_mhz: int
    predicted_s: float
    base_predicted_s: float
    """The offline (uncorrected) prediction, for the online correction."""
    budget_s: float


@dataclass(frozen=True, slots=True)
class Outcome:
    expectation: Expectation
    measured_s: float


class IterationTracker:
    """Pairs the latest measured iteration with the prediction made for it."""

    def __init__(self) -> None:
        self._pending: Expectation | None = None

    def expect(self, expectation: Expectation) -> None:
        self._pending = expectation

    def outcome(self, observation: Observation, clocks: ClockTracker) -> Outcome | None:
        """The measured iteration vs its prediction, when one completed at the predicted, settled clock."""
        pending = self._pending
        if pending is None or observation.iterations_delta <= 0:
            return None
        if observation.phase == "prefill" and observation.iterations_delta > 1:
            # Several batches ended since the prediction: the last is not the one predicted.
            self._pending = None
            return None
        measured = observation.last_iteration_s
        if measured is None:
            measured = observation.mean_iteration_s
        self._pending = None
        if measured is None or measured <= 0 or observation.sm_clock_mhz != pending.sm_clock_mhz:
            return None
        if not clocks.settled_for(observation.now_s - measured):
            return None
        return Outcome(pending, measured)

    def forget(self) -> None:
        self._pending = None


def prompt_tokens_per_request(observation: Observation) -> float | None:
    """Metrics-only: prompt tokens per request of the batches that ended since the last scrape.

    A prefill instance of a P/D pair generates one token per request, so the generation-token
    counter counts finished requests. None when none finished.
    """
    if observation.generation_tokens_delta > 0 and observation.prompt_tokens_delta > 0:
        return observation.prompt_tokens_delta / observation.generation_tokens_delta
    return None


class PromptLengthEstimate:
    """Mean prompt length for the metrics-only view: prompt tokens per finished prefill request."""

    def __init__(self, default_tokens: int, alpha: float = 0.2) -> None:
        self.tokens = float(default_tokens)
        self.alpha = alpha

    def update(self, observation: Observation) -> None:
        sample = prompt_tokens_per_request(observation)
        if sample is not None:
            self.tokens += self.alpha * (sample - self.tokens)


class PromptLengthQuantile:
    """A high quantile of recent prompt lengths, so a long prompt is planned for before it shows.

    Rich view: every queued prompt once. Metrics-only view: prompt tokens per finished request of
    the batches that ended since the last scrape (a P/D prefill instance generates one token per
    request), exact for a lone prompt and a batch mean otherwise.
    """

    def __init__(self, size: int = 256, quantile: float = 0.95) -> None:
        self._tokens: deque[int] = deque(maxlen=size)
        self.quantile = quantile
        self._last_arrival_s = float("-inf")
        self._arrivals_s: deque[float] = deque(maxlen=size)
        """Rich view: the same prompts' arrival times (``arrivals_per_s``)."""
        self._cached: int | None = None
        self._ordered: list[int] | None = None
        """The window sorted, until the next prompt (scrapes ask far more often than prompts end)."""

    def update(self, observation: Observation) -> None:
        if observation.queue is not None:
            for prompt in observation.queue:
                if prompt.arrival_s > self._last_arrival_s:
                    self._last_arrival_s = prompt.arrival_s
                    self._arrivals_s.append(prompt.arrival_s)
                    self._add(prompt.prompt_tokens)
            return
        per_request = prompt_tokens_per_request(observation)
        if per_request is not None:
            self._add(max(1, round(per_request)))

    def _add(self, tokens: int) -> None:
        self._tokens.append(tokens)
        self._cached = None
        self._ordered = None

    @property
    def tokens(self) -> int | None:
        """None until the window holds enough prompts (``tokens_at``)."""
        if self._cached is None:
            self._cached = self.tokens_at(self.quantile)
        return self._cached

    def arrivals_per_s(self) -> float | None:
        """Rich view: the instance's prompt arrival rate over the window (the engine hook dates
        every queued prompt); None before two arrivals at distinct instants."""
        arrivals = self._arrivals_s
        if len(arrivals) < 2 or arrivals[-1] <= arrivals[0]:
            return None
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    def tokens_at(self, quantile: float, min_samples: int = 1) -> int | None:
        """Another quantile of the same window; None until it holds ``min_samples`` prompts."""
        if len(self._tokens) < max(1, min_samples):
            return None
        if self._ordered is None:
            self._ordered = sorted(self._tokens)
        ordered = self._ordered
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]



@dataclass(frozen=True, slots=True)
class EndedBatch:
    """A prefill batch seen once done (metrics-only view): the longest time its requests had
    queued (``EndedBatches`` says how it is bounded; 0 when none queued), its size, and the
    clock in force while they queued."""

    queued_s: float
    tokens: int
    squared_tokens: float
    clock_mhz: int = 0
    """The clock the agent had requested when the batch ended (0: unknown); the step the requests
    queued behind ran at it, so their wait scales with the clock as that step's time does."""


class EndedBatches:
    """Recent prefill batches as the metrics-only view reports them, once per scrape in which
    batches ended (several in one interval count as one of their mean size).

    A batch's queueing is taken at its upper bound: a batch shows only once done, so the clock
    it ran at cannot be corrected, and the mean (what vLLM's coarse queue buckets mostly tell)
    hides the request that waited longest. The bound is the smallest of the queue histogram's
    (the waits' sum, the highest bucket's upper edge) and, when no request was seen waiting
    after the step before, that step's duration: a request not waiting at a step's end arrived
    after it (a vLLM V1 scheduler admits arrivals only between steps), so it waited at most the
    step that followed. Never below the histogram's lower bound.
    """

    def __init__(self, size: int = 256) -> None:
        self.batches: deque[EndedBatch] = deque(maxlen=size)
        self.version = 0
        self._step_s: float | None = None
        """The duration of the last step seen ending alone after a scrape that showed nothing
        waiting; None when unknown or when requests were seen waiting since."""

    def update(self, observation: Observation) -> None:
        steps = observation.iterations_delta
        per_request = prompt_tokens_per_request(observation)
        if observation.queue is not None:
            return
        if steps <= 0 or per_request is None:
            if observation.waiting_requests:
                self._step_s = None
            return
        tokens = max(1, round(observation.prompt_tokens_delta / steps))
        queued_s = self._queued_s(observation, steps)
        self.batches.append(EndedBatch(queued_s, tokens, tokens * max(1.0, per_request), observation.sm_clock_mhz))
        self.version += 1
        alone = steps == 1 and not observation.waiting_requests
        self._step_s = observation.mean_iteration_s if alone else None

    @property
    def last_step_s(self) -> float | None:
        """The step that ended alone since the previous scrape, when nothing was seen waiting
        after it: every request of the batch that follows arrived during it."""
        return self._step_s

    def _queued_s(self, observation: Observation, steps: int) -> float:
        low = observation.recorded_wait_s
        if low is None:
            return 0.0
        cap = observation.recorded_wait_cap_s
        high = cap if cap is not None else low
        if steps == 1 and self._step_s is not None:
            high = min(high, self._step_s)
        return max(low, high)
