"""Real-format /metrics pages of a vLLM V1 or SGLang engine, rendered from cumulative values.

A test drives an ``EnginePage`` as the engine would (one request's prefill time recorded at its
finish, one inter-token latency per generated token...) and renders the page text the engine's
prometheus_client would serve: the real family names, types, label sets and bucket edges. The
text then goes through the agent's parser and adapter, as a scraped page does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from joulescale.engines.dialects import SGLANG, VLLM
from joulescale.engines.histogram import HistogramRecorder

MODEL = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'
VLLM_LABELS = f'engine="0",{MODEL}'
SGLANG_SCHEDULER = f'engine_type="unified",{MODEL},pp_rank="0",tp_rank="0"'
"""SGLang's scheduler-side series carry its ranks; the tokenizer-side ones the model only."""
KV_CAPACITY_TOKENS = 448_000
"""Both engines' KV cache: vLLM's 28 000 blocks of 16 tokens; SGLang's used / usage."""

VLLM_FAMILIES: dict[str, tuple[float, ...]] = {
    "vllm:iteration_tokens_total": VLLM.iteration_token_edges or (),
    "vllm:time_to_first_token_seconds": VLLM.ttft_edges_s,
    "vllm:inter_token_latency_seconds": VLLM.itl_edges_s,
    "vllm:request_queue_time_seconds": VLLM.queue_edges_s or (),
    "vllm:request_prefill_time_seconds": VLLM.prefill_edges_s or (),
}
SGLANG_FAMILIES: dict[str, tuple[float, ...]] = {
    "sglang:time_to_first_token_seconds": SGLANG.ttft_edges_s,
    "sglang:inter_token_latency_seconds": SGLANG.itl_edges_s,
    "sglang:queue_time_seconds": SGLANG.queue_edges_s or (),
}


def _le(edge: float) -> str:
    return "+Inf" if math.isinf(edge) else repr(float(edge))


@dataclass
class EnginePage:
    """The cumulative state of one engine's metrics; ``omit`` drops families from the page."""

    engine: str
    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    preemptions: float = 0.0
    omit: set[str] = field(default_factory=set)
    histograms: dict[str, HistogramRecorder] = field(init=False)

    def __post_init__(self) -> None:
        families = VLLM_FAMILIES if self.engine == "vllm" else SGLANG_FAMILIES
        self.histograms = {name: HistogramRecorder(edges) for name, edges in families.items()}

    def observe(self, family: str, value: float, times: int = 1) -> None:
        self.histograms[family].observe(value, times)

    def restart(self) -> None:
        """An engine restart: every counter and histogram starts again from zero."""
        self.prompt_tokens = self.generation_tokens = self.preemptions = 0.0
        self.__post_init__()

    def text(self) -> str:
        return self._vllm() if self.engine == "vllm" else self._sglang()

    def _families(self, labels_of: dict[str, str]) -> list[str]:
        lines: list[str] = []
        for name, recorder in self.histograms.items():
            if name in self.omit:
                continue
            labels = labels_of.get(name, MODEL)
            snapshot = recorder.snapshot()
            lines += [f"# HELP {name} Histogram.", f"# TYPE {name} histogram"]
            for le, count in snapshot.buckets.items():
                lines.append(f'{name}_bucket{{{labels},le="{_le(le)}"}} {count!r}')
            lines.append(f"{name}_count{{{labels}}} {snapshot.count!r}")
            lines.append(f"{name}_sum{{{labels}}} {snapshot.sum!r}")
        return lines

    def _scalars(self, labels: str, values: list[tuple[str, str, float]]) -> list[str]:
        lines: list[str] = []
        for name, kind, value in values:
            if name in self.omit:
                continue
            lines += [f"# HELP {name} {kind}.", f"# TYPE {name} {kind}", f"{name}{{{labels}}} {float(value)!r}"]
        return lines

    def _vllm(self) -> str:
        lines = self._scalars(VLLM_LABELS, [
            ("vllm:num_requests_running", "gauge", self.running),
            ("vllm:num_requests_waiting", "gauge", self.waiting),
            ("vllm:kv_cache_usage_perc", "gauge", self.kv_usage),
            ("vllm:prompt_tokens_total", "counter", self.prompt_tokens),
            ("vllm:generation_tokens_total", "counter", self.generation_tokens),
            ("vllm:num_preemptions_total", "counter", self.preemptions),
        ])
        lines.append(
            'vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="28000"} 1.0'
        )
        lines += self._families(dict.fromkeys(VLLM_FAMILIES, VLLM_LABELS))
        return "\n".join(lines) + "\n"

    def _sglang(self) -> str:
        lines = self._scalars(SGLANG_SCHEDULER, [
            ("sglang:num_running_reqs", "gauge", self.running),
            ("sglang:num_queue_reqs", "gauge", self.waiting),
            ("sglang:token_usage", "gauge", self.kv_usage),
            ("sglang:num_used_tokens", "gauge", round(self.kv_usage * KV_CAPACITY_TOKENS)),
            ("sglang:num_retracted_requests_total", "counter", self.preemptions),
        ])
        lines += self._scalars(MODEL, [
            ("sglang:prompt_tokens_total", "counter", self.prompt_tokens),
            ("sglang:generation_tokens_total", "counter", self.generation_tokens),
        ])
        lines += self._families({"sglang:queue_time_seconds": SGLANG_SCHEDULER})
        return "\n".join(lines) + "\n"
