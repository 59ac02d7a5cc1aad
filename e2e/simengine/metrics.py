"""The engine's /metrics page: an ``EngineSample`` written in the text format of vLLM V1 or SGLang.

Nothing is modelled here: what the page holds, and when it changes, is the core's recorder's
(joulescale.engines). This module only spells it the way each engine does: names, HELP texts,
labels and the families that carry the KV cache size (vLLM's ``cache_config_info`` block count,
SGLang's used tokens next to its usage), as in vLLM v0.11-0.12 and SGLang 0.5 pages.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from joulescale.engines.histogram import Histogram
from joulescale.engines.sample import EngineSample

VLLM_BLOCK_SIZE = 16
"""vLLM's default KV block size: the page gives the cache as blocks of this many tokens."""


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def _number(value: float) -> str:
    return "+Inf" if value == math.inf else repr(float(value))


class PageWriter:
    """Prometheus text, one family at a time (an absent value or histogram writes nothing)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def value(self, name: str, labels: dict[str, str], value: float) -> None:
        self.lines.append(f"{name}{{{_labels(labels)}}} {_number(value)}")

    def scalar(
        self, name: str, kind: str, help_text: str, labels: dict[str, str], value: float | None
    ) -> None:
        if value is None:
            return
        self.family(name, kind, help_text)
        self.value(name, labels, value)

    def histogram(
        self, name: str, help_text: str, labels: dict[str, str], histogram: Histogram | None
    ) -> None:
        if histogram is None:
            return
        self.family(name, "histogram", help_text)
        for le, count in sorted(histogram.buckets.items()):
            self.value(f"{name}_bucket", {**labels, "le": _number(le)}, count)
        self.value(f"{name}_count", labels, histogram.count)
        self.value(f"{name}_sum", labels, histogram.sum)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_vllm(sample: EngineSample, model_name: str) -> str:
    page = PageWriter()
    labels = {"engine": "0", "model_name": model_name}
    page.scalar(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        labels,
        sample.running_requests,
    )
    page.scalar(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        labels,
        sample.waiting_requests,
    )
    page.scalar(
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        labels,
        sample.kv_cache_usage,
    )
    page.scalar(
        "vllm:num_preemptions_total",
        "counter",
        "Cumulative number of preemption from the engine.",
        labels,
        sample.preemptions_total,
    )
    page.scalar(
        "vllm:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        labels,
        sample.prompt_tokens_total,
    )
    page.scalar(
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        labels,
        sample.generation_tokens_total,
    )
    page.histogram(
        "vllm:iteration_tokens_total",
        "Histogram of number of tokens per engine_step.",
        labels,
        sample.iteration_tokens,
    )
    page.histogram(
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        labels,
        sample.ttft,
    )
    page.histogram(
        "vllm:inter_token_latency_seconds",
        "Histogram of inter-token latency in seconds.",
        labels,
        sample.inter_token_latency,
    )
    page.histogram(
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        labels,
        sample.queue_time,
    )
    page.histogram(
        "vllm:request_prefill_time_seconds",
        "Histogram of time spent in PREFILL phase for request.",
        labels,
        sample.prefill_time,
    )
    if sample.kv_capacity_tokens is not None:
        blocks = sample.kv_capacity_tokens // VLLM_BLOCK_SIZE
        page.scalar(
            "vllm:cache_config_info",
            "gauge",
            "Information of the LLMEngine CacheConfig",
            {"block_size": str(VLLM_BLOCK_SIZE), "engine": "0", "num_gpu_blocks": str(blocks)},
            1.0,
        )
    return page.text()


def render_sglang(sample: EngineSample, model_name: str) -> str:
    page = PageWriter()
    gauge_labels = {"engine_type": "unified", "model_name": model_name, "pp_rank": "0", "tp_rank": "0"}
    labels = {"model_name": model_name}
    page.scalar(
        "sglang:num_running_reqs",
        "gauge",
        "The number of running requests.",
        gauge_labels,
        sample.running_requests,
    )
    page.scalar(
        "sglang:num_queue_reqs",
        "gauge",
        "The number of requests in the waiting queue.",
        gauge_labels,
        sample.waiting_requests,
    )
    usage = sample.kv_cache_usage
    if usage is not None and sample.kv_capacity_tokens is not None:
        page.scalar(
            "sglang:num_used_tokens",
            "gauge",
            "The number of used tokens.",
            gauge_labels,
            round(usage * sample.kv_capacity_tokens),
        )
    page.scalar("sglang:token_usage", "gauge", "The token usage.", gauge_labels, usage)
    page.scalar(
        "sglang:num_retracted_requests_total",
        "counter",
        "Total number of retracted requests.",
        gauge_labels,
        sample.preemptions_total,
    )
    page.histogram(
        "sglang:queue_time_seconds",
        "Histogram of queueing time in seconds.",
        gauge_labels,
        sample.queue_time,
    )
    page.scalar(
        "sglang:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        labels,
        sample.prompt_tokens_total,
    )
    page.scalar(
        "sglang:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        labels,
        sample.generation_tokens_total,
    )
    page.histogram(
        "sglang:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        labels,
        sample.ttft,
    )
    page.histogram(
        "sglang:inter_token_latency_seconds",
        "Histogram of inter-token latency in seconds.",
        labels,
        sample.inter_token_latency,
    )
    return page.text()


RENDERERS: dict[str, Callable[[EngineSample, str], str]] = {"vllm": render_vllm, "sglang": render_sglang}
"""Engine name (joulescale.engines.dialects) -> its page writer (docs/dev/EXTENDING.md, "A new
engine")."""
