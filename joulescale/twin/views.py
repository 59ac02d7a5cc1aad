"""The two ways a policy sees an instance (docs/architecture.md, "What a policy can observe").

``metrics`` is what the node agent builds from a /metrics scrape taken every ``period`` and
visible ``delay`` later: the simulated engine's page (``joulescale.engines.recorder``, in the
engine's dialect) turned into an observation by the agent's own builder
(``joulescale.engines.observe``), so a policy sees what the agent would. ``rich`` is the engine
hook: the queue's prompt lengths and arrival times and the per-request decode progress, observed
at every step boundary, built here.
"""

from __future__ import annotations

from typing import Literal

from joulescale.control.observation import Observation
from joulescale.twin.decode import DecodeInstance
from joulescale.twin.prefill import PrefillInstance

ViewName = Literal["metrics", "rich"]
VIEW_NAMES: tuple[ViewName, ...] = ("metrics", "rich")


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
        preemptions = instance.recorder.preemptions
        out = (c.prompt_tokens - self._last_prompt, c.generation_tokens - self._last_gen,
               c.iterations - self._last_iterations, preemptions - self._last_preempt,
               now_s - self._last_at_s if self._last_at_s is not None else 0.0,
               (c.busy_s - self._last_busy_s) / (c.iterations - self._last_iterations)
               if c.iterations > self._last_iterations else None)
        self._last_at_s = now_s
        self._last_prompt, self._last_gen = c.prompt_tokens, c.generation_tokens
        self._last_iterations, self._last_preempt, self._last_busy_s = c.iterations, preemptions, c.busy_s
        return out

    def observe_prefill(self, instance: PrefillInstance, now_s: float, kv_capacity_tokens: int) -> Observation:
        prompt, gen, its, pre, interval, mean = self._deltas(instance, now_s)
        queue = instance.rich_queue()
        model = instance.model
        tokens = model.step_tokens
        return Observation(
            phase="prefill", now_s=now_s, sm_clock_mhz=instance.gpu.clock_mhz,
            running_requests=len(model.step), waiting_requests=model.waiting_count,
            kv_cache_usage=min(1.0, tokens / kv_capacity_tokens), context_tokens=tokens,
            prompt_tokens_delta=prompt, generation_tokens_delta=gen, iterations_delta=its,
            preemptions_delta=pre, interval_s=interval, last_iteration_s=instance.counters.last_iteration_s,
            mean_iteration_s=mean,
            oldest_wait_s=max((now_s - q.arrival_s for q in queue), default=None),
            queue=queue,
        )

    def observe_decode(self, instance: DecodeInstance, now_s: float) -> Observation:
        prompt, gen, its, pre, interval, mean = self._deltas(instance, now_s)
        model = instance.model
        waiting = model.waiting
        return Observation(
            phase="decode", now_s=now_s, sm_clock_mhz=instance.gpu.clock_mhz,
            running_requests=len(model.running), waiting_requests=len(waiting),
            kv_cache_usage=model.kv_cache_usage, context_tokens=model.context_tokens,
            prompt_tokens_delta=prompt, generation_tokens_delta=gen, iterations_delta=its,
            preemptions_delta=pre, interval_s=interval, last_iteration_s=instance.counters.last_iteration_s,
            mean_iteration_s=mean,
            oldest_wait_s=max((now_s - r.first_token_s for r in waiting), default=None),
            decoding=instance.rich_progress(now_s),
        )
