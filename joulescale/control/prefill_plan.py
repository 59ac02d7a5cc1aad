"""Project the prefill queue into the next batches (the first step of the prefill MPC, docs/policies.md).

The engine fills each iteration with prompts in arrival order up to its token budget and
splits (chunks) a prompt that does not fit. A request is done when its last chunk is. Each
projected batch carries the tightest remaining TTFT budget among the requests it finishes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from joulescale.engines.observation import Observation


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    tokens: int
    squared_tokens: float
    deadline_s: float
    """Time from now by which this batch must end; inf when it finishes no request."""


def queued_prompts(
    observation: Observation, prompt_tokens_estimate: float, limit: int
) -> list[tuple[int, float]]:
    """(prompt tokens, time already waited) of the queued and running requests, oldest first.

    Rich view: the engine hook's queue. Metrics-only view: the running requests share the
    batch's ``context_tokens`` (the KV-usage estimate of the tokens in flight), the waiting ones
    have the estimated mean length, and the waits spread evenly from the oldest (0 if unknown).
    At most ``limit`` requests (the rest cannot finish within the horizon anyway).
    """
    if observation.queue is not None:
        return [
            (prompt.prompt_tokens, max(0.0, observation.now_s - prompt.arrival_s))
            for prompt in observation.queue[:limit]
        ]
    running = observation.running_requests
    count = min(running + observation.waiting_requests, limit)
    estimate = max(1, round(prompt_tokens_estimate))
    in_flight = (
        max(1, round(observation.context_tokens / running))
        if running and observation.context_tokens
        else estimate
    )
    oldest_s = observation.oldest_wait_s or 0.0
    return [(in_flight if i < running else estimate, oldest_s * (1.0 - i / count)) for i in range(count)]


def project_batches(
    prompts: list[tuple[int, float]],
    ttft_budget_s: float,
    max_batch_tokens: int,
    horizon: int,
    in_flight: int = 0,
) -> list[PlannedBatch]:
    """Up to ``horizon`` batches of the queue in arrival order, chunked at the token budget.

    The first ``in_flight`` prompts are the batch already running: it is closed after them,
    since a waiting prompt cannot join an iteration in flight.
    """
    batches: list[PlannedBatch] = []
    tokens = 0
    squared = 0.0
    deadline = math.inf
    for index, (prompt_tokens, waited_s) in enumerate(prompts):
        if index == in_flight and tokens > 0:
            batches.append(PlannedBatch(tokens, squared, deadline))
            if len(batches) == horizon:
                return batches
            tokens, squared, deadline = 0, 0.0, math.inf
        remaining = max(1, prompt_tokens)
        while remaining > 0:
            chunk = min(remaining, max_batch_tokens - tokens)
            tokens += chunk
            squared += chunk * chunk
            remaining -= chunk
            if remaining == 0:
                deadline = min(deadline, ttft_budget_s - waited_s)
            if tokens == max_batch_tokens:
                batches.append(PlannedBatch(tokens, squared, deadline))
                if len(batches) == horizon:
                    return batches
                tokens, squared, deadline = 0, 0.0, math.inf
    if tokens > 0:
        batches.append(PlannedBatch(tokens, squared, deadline))
    return batches
