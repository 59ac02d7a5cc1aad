"""Every PromQL expression the planner loop sends, in one place (the chart's dashboards write
their own, over the same metric names).

Names come from the engines' pages (vLLM v0.11-0.12 ``vllm/v1/metrics/loggers.py``; SGLang
``srt/metrics/collector.py``; the simulated engines publish the same, ``e2e/simengine``) and from
the agent's exporter (``joulescale_gpu_energy_joules_total``: the client library adds ``_total``
to a counter's name; ``joulescale_gpu_sm_clock_mhz``). Every
series is selected by the ``namespace`` and ``service`` labels, which the chart's monitors (and
the agent itself) put on them, and grouped by ``role``.
"""

from __future__ import annotations

from dataclasses import dataclass

AGENT_ENERGY = "joulescale_gpu_energy_joules_total"
AGENT_SM_CLOCK = "joulescale_gpu_sm_clock_mhz"


@dataclass(frozen=True, slots=True)
class EngineMetricNames:
    """The metric names one engine publishes that the planner reads."""

    ttft: str
    """Histogram of time to first token (s): one observation per request."""
    inter_token: str
    """Histogram of the gap between two output tokens (s): what TPOT bounds."""
    prompt_tokens: str
    """Counter of prompt tokens processed."""
    generation_tokens: str
    """Counter of output tokens generated."""
    prompt_length: str | None = None
    """Histogram of prompt lengths per request (tokens), where the engine has one."""
    output_length: str | None = None
    """Histogram of output lengths per request (tokens), where the engine has one."""


ENGINE_METRICS: dict[str, EngineMetricNames] = {
    "vllm": EngineMetricNames(
        ttft="vllm:time_to_first_token_seconds",
        inter_token="vllm:inter_token_latency_seconds",
        prompt_tokens="vllm:prompt_tokens_total",
        generation_tokens="vllm:generation_tokens_total",
        prompt_length="vllm:request_prompt_tokens",
        output_length="vllm:request_generation_tokens",
    ),
    "sglang": EngineMetricNames(
        ttft="sglang:time_to_first_token_seconds",
        inter_token="sglang:inter_token_latency_seconds",
        prompt_tokens="sglang:prompt_tokens_total",
        generation_tokens="sglang:generation_tokens_total",
    ),
}


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True, slots=True)
class ServiceQueries:
    """The expressions of one planning pass of one service, over a window of ``window_s``."""

    requests_by_role: str
    reporting_pods_by_role: str
    """How many engines publish a TTFT histogram now: fewer than are ready means partial data."""
    prompt_tokens_by_role: str
    generation_tokens_by_role: str
    ttft_buckets: str
    inter_token_buckets: str
    energy_by_role: str
    energy_span_by_role: str
    """Seconds from each role's first energy sample in the window to its end: a replica (or a
    service) younger than the window has counted energy over that much time only."""
    sm_clock_by_role: str
    prompt_length_buckets: str | None
    output_length_buckets: str | None


def service_queries(engine: str, namespace: str, service: str, window_s: int) -> ServiceQueries | None:
    """The expressions for ``engine``'s metrics, or None for an engine without known names."""
    names = ENGINE_METRICS.get(engine)
    if names is None:
        return None
    selector = f'namespace="{_quote(namespace)}",service="{_quote(service)}"'
    window = f"[{int(window_s)}s]"

    def by_role(metric: str) -> str:
        return f"sum by (role) (increase({metric}{{{selector}}}{window}))"

    def buckets(histogram: str, role: str) -> str:
        return f'sum by (le) (increase({histogram}_bucket{{{selector},role="{role}"}}{window}))'

    return ServiceQueries(
        requests_by_role=by_role(f"{names.ttft}_count"),
        reporting_pods_by_role=f"count by (role) ({names.ttft}_count{{{selector}}})",
        prompt_tokens_by_role=by_role(names.prompt_tokens),
        generation_tokens_by_role=by_role(names.generation_tokens),
        ttft_buckets=buckets(names.ttft, "prefill"),
        inter_token_buckets=buckets(names.inter_token, "decode"),
        energy_by_role=by_role(AGENT_ENERGY),
        energy_span_by_role=(
            f"max by (role) (time() - min_over_time(timestamp({AGENT_ENERGY}{{{selector}}})"
            f"[{int(window_s)}s:{max(1, int(window_s) // 60)}s]))"
        ),
        sm_clock_by_role=f"avg by (role) (avg_over_time({AGENT_SM_CLOCK}{{{selector}}}{window}))",
        prompt_length_buckets=buckets(names.prompt_length, "prefill") if names.prompt_length else None,
        output_length_buckets=buckets(names.output_length, "decode") if names.output_length else None,
    )
