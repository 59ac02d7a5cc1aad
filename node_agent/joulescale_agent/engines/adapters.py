"""Engine adapters: one parsed /metrics page -> an EngineSample of cumulative values.

Each concept has a fallback chain of names, newest first, because engines rename
metrics between versions. Running and waiting requests are required; the rest is optional and
``None`` when no name of its chain is present. Every value is checked before it leaves: finite,
not negative, below ``MAX_VALUE``; histograms cumulative and ending at ``+Inf``. A page that
fails a check raises MetricsFormatError: a wrong observation is worse than none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from joulescale.engines.dialects import dialect_for
from joulescale.engines.histogram import Histogram
from joulescale.engines.sample import EngineSample
from joulescale_agent.engines.promtext import MetricsPage
from joulescale_agent.errors import MetricsFormatError


@dataclass(frozen=True, slots=True)
class NameChains:
    running: tuple[str, ...]
    waiting: tuple[str, ...]
    kv_usage: tuple[str, ...]
    prompt_tokens: tuple[str, ...]
    generation_tokens: tuple[str, ...]
    preemptions: tuple[str, ...]
    iteration_histogram: tuple[str, ...]
    ttft_histogram: tuple[str, ...]
    itl_histogram: tuple[str, ...]
    queue_histogram: tuple[str, ...]
    prefill_histogram: tuple[str, ...]
    """Per-request first schedule to first token (vLLM); empty where the engine has none."""
    kv_capacity: tuple[str, ...] = ()
    """A gauge of the KV cache's size in tokens; vLLM and SGLang state it otherwise (their
    adapters override ``kv_capacity_tokens``)."""
    where: dict[str, str] | None = None
    """Label filter for the engine's own series (SGLang: TP rank 0 exports the scheduler)."""


class EngineAdapter(Protocol):
    name: str

    def sample(self, page: MetricsPage) -> EngineSample: ...


MAX_VALUE = 2.0**53
"""Above this a float no longer counts tokens exactly; no engine reaches it honestly."""
MAX_REQUESTS = 1_000_000
"""Running or waiting requests of one engine instance beyond any real batch or queue."""


GAUGE, COUNTER, HISTOGRAM = "gauge", "counter", "histogram"
_UNTYPED = {None, "untyped", "unknown"}


def _check_type(page: MetricsPage, name: str, kind: str) -> None:
    """Refuse a family the page declares as another type than the one it is read as (a counter
    may be declared under its name without ``_total``, as OpenMetrics does)."""
    declared = page.declared.get(name)
    if declared is None and kind == COUNTER and name.endswith("_total"):
        declared = page.declared.get(name.removesuffix("_total"))
    if declared is not None and declared not in _UNTYPED and declared != kind:
        raise MetricsFormatError(f"{name} is declared a {declared[:20]}, read as a {kind}")


def _finite(name: str, value: float) -> float:
    """A usable gauge or counter value: finite, not negative, not absurdly large."""
    if not 0.0 <= value <= MAX_VALUE:  # False for NaN too
        raise MetricsFormatError(f"{name} is {value}, outside 0..{MAX_VALUE:.0f}")
    return value


def _checked(name: str, histogram: Histogram) -> Histogram:
    """Count and sum usable; buckets cumulative (non-decreasing by le) and ending at +Inf = count."""
    _finite(f"{name}_count", histogram.count)
    _finite(f"{name}_sum", histogram.sum)
    if not histogram.buckets:
        return histogram
    previous = 0.0
    for le in sorted(histogram.buckets):
        cumulative = _finite(f"{name}_bucket", histogram.buckets[le])
        if cumulative < previous:
            raise MetricsFormatError(f"{name} buckets are not cumulative at le={le}")
        previous = cumulative
    if histogram.buckets.get(math.inf) != histogram.count:
        raise MetricsFormatError(f"{name} lacks a +Inf bucket equal to its count")
    return histogram


class ChainAdapter:
    """An adapter defined entirely by its name chains."""

    def __init__(self, name: str, chains: NameChains) -> None:
        self.name = name
        self._chains = chains

    def _value(
        self, page: MetricsPage, names: tuple[str, ...], kind: str, required: bool = False
    ) -> float | None:
        for name in names:
            value = page.total(name, self._chains.where)
            if value is not None:
                _check_type(page, name, kind)
                return _finite(name, value)
        if required:
            raise MetricsFormatError(f"{self.name} page lacks every one of {', '.join(names)}")
        return None

    def _histogram(self, page: MetricsPage, names: tuple[str, ...]) -> Histogram | None:
        for name in names:
            histogram = page.histogram(name, self._chains.where)
            if histogram is not None:
                _check_type(page, name, HISTOGRAM)
                return _checked(name, histogram)
        return None

    def kv_capacity_tokens(self, page: MetricsPage) -> int | None:
        """The KV cache size in tokens from the ``kv_capacity`` gauge; None without one."""
        tokens = self._value(page, self._chains.kv_capacity, GAUGE)
        return round(tokens) if tokens else None

    def sample(self, page: MetricsPage) -> EngineSample:
        c = self._chains
        running = self._value(page, c.running, GAUGE, required=True)
        waiting = self._value(page, c.waiting, GAUGE, required=True)
        assert running is not None
        assert waiting is not None
        if running > MAX_REQUESTS or waiting > MAX_REQUESTS:
            raise MetricsFormatError(f"{running} running / {waiting} waiting requests is beyond any engine")
        kv_usage = self._value(page, c.kv_usage, GAUGE)
        if kv_usage is not None and kv_usage > 1.0:
            raise MetricsFormatError(f"KV cache usage {kv_usage} is above 1")
        iterations = self._histogram(page, c.iteration_histogram)
        return EngineSample(
            running_requests=int(running),
            waiting_requests=int(waiting),
            kv_cache_usage=kv_usage,
            kv_capacity_tokens=self.kv_capacity_tokens(page),
            prompt_tokens_total=self._value(page, c.prompt_tokens, COUNTER),
            generation_tokens_total=self._value(page, c.generation_tokens, COUNTER),
            preemptions_total=self._value(page, c.preemptions, COUNTER),
            iteration_tokens=iterations,
            ttft=self._histogram(page, c.ttft_histogram),
            inter_token_latency=self._histogram(page, c.itl_histogram),
            queue_time=self._histogram(page, c.queue_histogram),
            prefill_time=self._histogram(page, c.prefill_histogram),
        )


class VllmAdapter(ChainAdapter):
    def __init__(self) -> None:
        super().__init__(
            "vllm",
            NameChains(
                running=("vllm:num_requests_running",),
                waiting=("vllm:num_requests_waiting",),
                kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
                prompt_tokens=("vllm:prompt_tokens_total", "vllm:prompt_tokens"),
                generation_tokens=("vllm:generation_tokens_total", "vllm:generation_tokens"),
                preemptions=("vllm:num_preemptions_total", "vllm:num_preemptions"),
                iteration_histogram=("vllm:iteration_tokens_total", "vllm:iteration_tokens"),
                ttft_histogram=("vllm:time_to_first_token_seconds",),
                itl_histogram=("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
                queue_histogram=("vllm:request_queue_time_seconds",),
                prefill_histogram=("vllm:request_prefill_time_seconds",),
            ),
        )

    def kv_capacity_tokens(self, page: MetricsPage) -> int | None:
        """KV capacity in tokens = num_gpu_blocks x block_size, summed over engines."""
        total = 0
        for labels, _ in page.series("vllm:cache_config_info"):
            blocks, size = labels.get("num_gpu_blocks", ""), labels.get("block_size", "")
            if not (blocks.isascii() and blocks.isdigit() and size.isascii() and size.isdigit()):
                continue  # absent or not a plain number (len checks keep int() cheap below)
            if len(blocks) > 12 or len(size) > 12:
                raise MetricsFormatError("vllm:cache_config_info holds an absurd KV cache size")
            total += int(blocks) * int(size)
        return total if 0 < total <= MAX_VALUE else None


class SglangAdapter(ChainAdapter):
    def __init__(self) -> None:
        super().__init__(
            "sglang",
            NameChains(
                running=("sglang:num_running_reqs",),
                waiting=("sglang:num_queue_reqs",),
                kv_usage=("sglang:token_usage",),
                prompt_tokens=("sglang:prompt_tokens_total",),
                generation_tokens=("sglang:generation_tokens_total",),
                # The counter; ``sglang:num_retracted_reqs`` is a gauge of the latest retractions.
                preemptions=("sglang:num_retracted_requests_total",),
                iteration_histogram=(),
                ttft_histogram=("sglang:time_to_first_token_seconds",),
                itl_histogram=("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
                queue_histogram=("sglang:queue_time_seconds",),
                prefill_histogram=(),
                where={"tp_rank": "0"},
            ),
        )

    def kv_capacity_tokens(self, page: MetricsPage) -> int | None:
        used = page.total("sglang:num_used_tokens", {"tp_rank": "0"})
        usage = page.total("sglang:token_usage", {"tp_rank": "0"})
        if used is None or usage is None:
            return None
        _finite("sglang:num_used_tokens", used)
        if not 0.0 < _finite("sglang:token_usage", usage) <= 1.0:
            return None
        capacity = used / usage
        return round(capacity) if capacity <= MAX_VALUE else None


ADAPTERS: dict[str, Callable[[], ChainAdapter]] = {}
"""Engine name -> a factory of its adapter (one per engine instance: adapters may keep state)."""


def register_adapter(name: str, factory: Callable[[], ChainAdapter]) -> None:
    """The page reader of a registered engine (``joulescale.engines.dialects``, which owns the
    names). docs/dev/EXTENDING.md, "A new engine"."""
    name = dialect_for(name).name  # raises for a name the core does not know
    if name in ADAPTERS:
        raise ValueError(f"engine {name!r} already has an adapter")
    ADAPTERS[name] = factory


@contextmanager
def registered_adapter(name: str, factory: Callable[[], ChainAdapter]) -> Iterator[None]:
    """The adapter registered for the block only (tests, experiments)."""
    register_adapter(name, factory)
    try:
        yield
    finally:
        del ADAPTERS[name.lower()]


def adapter_for(engine: str) -> ChainAdapter:
    try:
        return ADAPTERS[engine.lower()]()
    except KeyError:
        raise ValueError(f"no metrics adapter for engine {engine!r}; known: {', '.join(ADAPTERS)}") from None


register_adapter("vllm", VllmAdapter)
register_adapter("sglang", SglangAdapter)
