"""One scrape of one engine instance, neutral to the engine that published it."""

from __future__ import annotations

from dataclasses import dataclass

from joulescale.engines.histogram import Histogram


@dataclass(frozen=True, slots=True)
class EngineSample:
    """What an engine's ``/metrics`` held at one moment; counters and histograms are cumulative.

    Every field is one the engine really publishes (``dialects`` says which engine has which and
    when it changes); a field the engine lacks is ``None``, never a value from somewhere else.
    """

    running_requests: int
    waiting_requests: int
    kv_cache_usage: float | None
    """Fraction 0..1 of the KV cache in use (vLLM kv_cache_usage_perc, SGLang token_usage)."""
    kv_capacity_tokens: int | None
    """KV cache size in tokens (vLLM cache_config_info blocks x block size; SGLang used / usage)."""
    prompt_tokens_total: float | None
    generation_tokens_total: float | None
    preemptions_total: float | None
    """vLLM preemptions; SGLang retractions."""
    iteration_tokens: Histogram | None = None
    """Tokens per engine step (vLLM iteration_tokens_total); its count is the steps run."""
    ttft: Histogram | None = None
    inter_token_latency: Histogram | None = None
    queue_time: Histogram | None = None
    """Per-request time spent waiting before the first schedule (vLLM request_queue_time_seconds,
    recorded at the request's finish; SGLang queue_time_seconds, recorded as its batch forms)."""
    prefill_time: Histogram | None = None
    """Per-request time from first schedule to first token (vLLM request_prefill_time_seconds,
    recorded at the request's finish); SGLang has none."""

    @property
    def iterations_total(self) -> float | None:
        return self.iteration_tokens.count if self.iteration_tokens is not None else None
