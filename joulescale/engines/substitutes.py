"""What a real engine's page offers in place of the signals no engine publishes.

No vLLM or SGLang metric carries a step's duration, a prefill step count on SGLang, or the wait
of the oldest queued request. Each function below derives one of them from histogram
increments that the engines do publish (docs/agent.md, "Substitutes", has the table per
engine). The agent and the twin both reach them through ``ObservationBuilder``, so a policy sees
the same estimate, with the same error, in both.
"""

from __future__ import annotations

import math

from joulescale.engines.histogram import Histogram


def _observed(histogram: Histogram | None) -> bool:
    return histogram is not None and histogram.count > 0


def prefill_step_s(
    prefill: Histogram | None, ttft: Histogram | None, queue: Histogram | None
) -> float | None:
    """Mean prefill time of the requests whose first token came in the interval.

    vLLM: ``request_prefill_time_seconds``, first schedule to first token, recorded when the
    request finishes; on a P/D prefill instance a request finishes with its first token, so an
    unchunked request's value is the step that ran it. Under chunked prefill it is the prompt's
    whole prefill (every step that ran one of its chunks, and what shared those steps).
    Otherwise TTFT minus queue time, when the same number of requests entered both histograms
    (SGLang records the queue time as the batch forms and TTFT as the first token arrives, so
    a batch still running at the scrape leaves the counts unequal); this includes the
    frontend's own time, tokenisation included.
    """
    if prefill is not None:
        return prefill.mean if _observed(prefill) else None
    if ttft is None or queue is None or not _observed(ttft) or ttft.count != queue.count:
        return None
    step_s = ttft.sum / ttft.count - queue.sum / queue.count
    return step_s if step_s > 0.0 else None


def decode_steps(itl_tokens: float, running_before: int, running_now: int) -> int:
    """Decode steps run in the interval, from the inter-token latency histogram's count.

    SGLang has no step counter, but its tokenizer records the inter-token latency once per
    generated token (``observe_inter_token_latency`` adds the chunk's token count to its
    bucket), so the count's increment is the tokens decoded after each request's first. Divided
    by the batch size (the mean of the interval's two running-requests readings) it counts the
    steps. Exact while the batch keeps its size, every running request gains one token per step
    (no speculative decoding) and every token has reached the tokenizer by the scrape; the
    gauge is refreshed only every ``decode_log_interval`` steps and a non-streaming request
    reports its tokens in chunks, so otherwise an estimate.
    """
    readings = [r for r in (running_before, running_now) if r > 0]
    if itl_tokens <= 0 or not readings:
        return 0
    return round(itl_tokens / (sum(readings) / len(readings)))


def longest_wait_s(queue: Histogram | None) -> float | None:
    """A lower bound of the longest queueing time among the requests the interval recorded.

    The mean alone hides the one request that waited long. The highest non-empty bucket says
    the longest wait is above that bucket's lower edge; this returns the larger of that edge
    and the mean (exact for a single request). vLLM's first bucket ends at 0.3 s, so shorter
    waits are known only through the mean; SGLang's buckets start at 0, 0.1, 0.2, 0.5 s.
    """
    if queue is None or not _observed(queue):
        return None
    assert queue.mean is not None
    lower_edge = 0.0
    previous_le, previous_count = 0.0, 0.0
    for le in sorted(queue.buckets):
        count = queue.buckets[le]
        if count > previous_count:
            lower_edge = previous_le
        previous_le, previous_count = le, count
    return max(queue.mean, lower_edge)


def longest_wait_cap_s(queue: Histogram | None) -> float | None:
    """An upper bound of the same longest queueing time: the smaller of the waits' sum (no wait
    is longer than all of them together; exact for a single request) and the upper edge of the
    highest non-empty bucket (none above it)."""
    if queue is None or not _observed(queue):
        return None
    upper_edge = math.inf
    previous_count = 0.0
    for le in sorted(queue.buckets):
        count = queue.buckets[le]
        if count > previous_count:
            upper_edge = le
        previous_count = count
    return min(queue.sum, upper_edge)
