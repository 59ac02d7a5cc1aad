"""Small per-instance memories a policy keeps between observations."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from joulescale.control.observation import Observation


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
    decided_at_s: float


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


class PromptLengthEstimate:
    """Mean prompt length for the metrics-only view: prompt tokens per finished prefill request.

    A prefill instance of a P/D pair generates one token per request, so the generation-token
    counter counts finished requests.
    """

    def __init__(self, default_tokens: int, alpha: float = 0.2) -> None:
        self.tokens = float(default_tokens)
        self.alpha = alpha

    def update(self, observation: Observation) -> None:
        if observation.generation_tokens_delta > 0 and observation.prompt_tokens_delta > 0:
            sample = observation.prompt_tokens_delta / observation.generation_tokens_delta
            self.tokens += self.alpha * (sample - self.tokens)


class BatchSizeWindow:
    """Token counts of recent prefill batches, for a high quantile of what comes next."""

    def __init__(self, size: int = 64, quantile: float = 1.0) -> None:
        self._tokens: deque[int] = deque(maxlen=size)
        self.quantile = quantile

    def update(self, observation: Observation, max_batch_tokens: int) -> None:
        if observation.queue:
            tokens = 0
            for prompt in observation.queue:
                tokens += prompt.prompt_tokens
                if tokens >= max_batch_tokens:
                    break
            self._tokens.append(min(tokens, max_batch_tokens))
        elif observation.running_requests and observation.context_tokens > 0:
            self._tokens.append(min(observation.context_tokens, max_batch_tokens))

    def typical_large_tokens(self) -> int | None:
        if not self._tokens:
            return None
        ordered = sorted(self._tokens)
        return ordered[min(len(ordered) - 1, int(self.quantile * len(ordered)))]
