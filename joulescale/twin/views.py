"""The two ways a policy sees an instance (docs/architecture.md, "What a policy can observe").

``metrics`` is what the node agent builds from a /metrics scrape taken every ``period`` and
visible ``delay`` later: counts, KV usage, counter deltas and step times; the rich fields are
None. A prefill instance's scheduler gauges are those of its last step end (``step-end``, what
vLLM V1 and SGLang publish: a P/D prefill batch in flight shows in no gauge until it is done), or
the live state (``live``, an engine that published every change; optimistic, for comparison). ``rich`` is the engine hook: the queue's prompt lengths and arrival times and the
per-request decode progress, observed at every iteration boundary.
"""

from __future__ import annotations

from typing import Literal

from joulescale.control.observation import Observation, Phase
from joulescale.twin.counters import Scrape, bucket_upper_edge_s
from joulescale.twin.decode import DecodeInstance
from joulescale.twin.prefill import PrefillInstance

ViewName = Literal["metrics", "rich"]
VIEW_NAMES: tuple[ViewName, ...] = ("metrics", "rich")
GaugeTiming = Literal["step-end", "live"]
GAUGE_TIMINGS: tuple[GaugeTiming, ...] = ("step-end", "live")


def scrape_prefill(instance: PrefillInstance, now_s: float, kv_capacity_tokens: int,
                   gauges: GaugeTiming = "step-end") -> Scrape:
    counters = instance.counters
    wait = counters.max_queue_wait_s
    counters.max_queue_wait_s = 0.0
    if gauges == "live":
        running, waiting, kv_tokens = len(instance.batch), len(instance.waiting), instance.batch_tokens
    else:
        running, waiting, kv_tokens = 0, instance.step_end_waiting, instance.step_end_kv_tokens
    return Scrape(
        at_s=now_s,
        running_requests=running,
        waiting_requests=waiting,
        kv_cache_usage=min(1.0, kv_tokens / kv_capacity_tokens),
        prompt_tokens=counters.prompt_tokens,
        generation_tokens=counters.generation_tokens,
        iterations=counters.iterations,
        preemptions=counters.preemptions,
        busy_s=counters.busy_s,
        last_iteration_s=counters.last_iteration_s,
        queue_wait_s=bucket_upper_edge_s(wait) if wait > 0 else None,
    )


def scrape_decode(instance: DecodeInstance, now_s: float) -> Scrape:
    counters = instance.counters
    return Scrape(
        at_s=now_s,
        running_requests=len(instance.running),
        waiting_requests=len(instance.waiting),
        kv_cache_usage=instance.kv_cache_usage,
        prompt_tokens=counters.prompt_tokens,
        generation_tokens=counters.generation_tokens,
        iterations=counters.iterations,
        preemptions=counters.preemptions,
        busy_s=counters.busy_s,
        last_iteration_s=counters.last_iteration_s,
        queue_wait_s=None,
    )


class MetricsView:
    """Turns successive scrapes of one instance into observations with counter deltas."""

    __slots__ = ("_kv_capacity_tokens", "_phase", "_previous")

    def __init__(self, phase: Phase, kv_capacity_tokens: int) -> None:
        self._phase: Phase = phase
        self._kv_capacity_tokens = kv_capacity_tokens
        self._previous: Scrape | None = None

    def observe(self, scrape: Scrape, now_s: float, sm_clock_mhz: int) -> Observation:
        prev = self._previous
        self._previous = scrape
        iterations = scrape.iterations - prev.iterations if prev else 0
        busy_s = scrape.busy_s - prev.busy_s if prev else 0.0
        return Observation(
            phase=self._phase,
            now_s=now_s,
            sm_clock_mhz=sm_clock_mhz,
            running_requests=scrape.running_requests,
            waiting_requests=scrape.waiting_requests,
            kv_cache_usage=scrape.kv_cache_usage,
            context_tokens=round(scrape.kv_cache_usage * self._kv_capacity_tokens),
            prompt_tokens_delta=scrape.prompt_tokens - prev.prompt_tokens if prev else 0,
            generation_tokens_delta=scrape.generation_tokens - prev.generation_tokens if prev else 0,
            iterations_delta=iterations,
            preemptions_delta=scrape.preemptions - prev.preemptions if prev else 0,
            interval_s=scrape.at_s - prev.at_s if prev else 0.0,
            last_iteration_s=scrape.last_iteration_s,
            mean_iteration_s=busy_s / iterations if iterations > 0 else None,
            oldest_wait_s=scrape.queue_wait_s,
        )


class RichView:
    """Builds engine-hook observations at iteration boundaries (deltas since the previous one)."""

    __slots__ = ("_last_at_s", "_last_busy_s", "_last_gen", "_last_iterations", "_last_preempt", "_last_prompt")

    def __init__(self) -> None:
        self._last_at_s: float | None = None
        self._last_prompt = 0
        self._last_gen = 0
        self._last_iterations = 0
        self._last_preempt = 0
        self._last_busy_s = 0.0

    def _deltas(self, instance: PrefillInstance | DecodeInstance, now_s: float) -> tuple[int, int, int, int,
                                                                                         float, float | None]:
        c = instance.counters
        out = (c.prompt_tokens - self._last_prompt, c.generation_tokens - self._last_gen,
               c.iterations - self._last_iterations, c.preemptions - self._last_preempt,
               now_s - self._last_at_s if self._last_at_s is not None else 0.0,
               (c.busy_s - self._last_busy_s) / (c.iterations - self._last_iterations)
               if c.iterations > self._last_iterations else None)
        self._last_at_s = now_s
        self._last_prompt, self._last_gen = c.prompt_tokens, c.generation_tokens
        self._last_iterations, self._last_preempt, self._last_busy_s = c.iterations, c.preemptions, c.busy_s
        return out

    def observe_prefill(self, instance: PrefillInstance, now_s: float, kv_capacity_tokens: int) -> Observation:
        prompt, gen, its, pre, interval, mean = self._deltas(instance, now_s)
        queue = instance.rich_queue()
        tokens = instance.batch_tokens
        return Observation(
            phase="prefill", now_s=now_s, sm_clock_mhz=instance.gpu.clock_mhz,
            running_requests=len(instance.batch), waiting_requests=len(instance.waiting),
            kv_cache_usage=min(1.0, tokens / kv_capacity_tokens), context_tokens=tokens,
            prompt_tokens_delta=prompt, generation_tokens_delta=gen, iterations_delta=its,
            preemptions_delta=pre, interval_s=interval, last_iteration_s=instance.counters.last_iteration_s,
            mean_iteration_s=mean,
            oldest_wait_s=max((now_s - q.arrival_s for q in queue), default=None),
            queue=queue,
        )

    def observe_decode(self, instance: DecodeInstance, now_s: float) -> Observation:
        prompt, gen, its, pre, interval, mean = self._deltas(instance, now_s)
        waiting = instance.waiting
        return Observation(
            phase="decode", now_s=now_s, sm_clock_mhz=instance.gpu.clock_mhz,
            running_requests=len(instance.running), waiting_requests=len(waiting),
            kv_cache_usage=instance.kv_cache_usage, context_tokens=instance.context_tokens,
            prompt_tokens_delta=prompt, generation_tokens_delta=gen, iterations_delta=its,
            preemptions_delta=pre, interval_s=interval, last_iteration_s=instance.counters.last_iteration_s,
            mean_iteration_s=mean,
            oldest_wait_s=max((now_s - r.first_token_s for r in waiting), default=None),
            decoding=instance.rich_progress(now_s),
        )
