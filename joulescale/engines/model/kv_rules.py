"""The KV-cache rules every engine model that runs decodes shares: admission and preemption.

One owner for the two rules, so a P/D decode instance (``DecodeModel``) and an aggregated
instance (``AggregatedModel``) admit and preempt alike:

- admission (FIFO): the queue's head joins while fewer than ``max_running`` sequences run and
  the cache, after its context and one more token per running sequence, stays under
  ``1 - watermark`` of its capacity; an empty instance always admits its head, so a context
  larger than the watermark's room still runs;
- preemption (vLLM's recompute policy): when the next step's tokens would not fit in the cache,
  the most recently admitted request goes back to the front of the queue, and its context is
  prefilled again when it is readmitted; the last running request is never preempted.
"""

from __future__ import annotations


class KvRules:
    """Admission and preemption thresholds of one instance's KV cache, in tokens."""

    __slots__ = ("admit_limit_tokens", "kv_capacity_tokens", "max_running")

    def __init__(self, kv_capacity_tokens: int, max_running: int, watermark: float) -> None:
        if kv_capacity_tokens < 1 or max_running < 1 or not 0.0 <= watermark < 1.0:
            raise ValueError("need a positive KV capacity and max_running, and a watermark in [0, 1)")
        self.kv_capacity_tokens = kv_capacity_tokens
        self.max_running = max_running
        self.admit_limit_tokens = int(kv_capacity_tokens * (1.0 - watermark))

    def admits(self, in_use_tokens: int, running: int, context_tokens: int) -> bool:
        """May a request of ``context_tokens`` join ``running`` sequences holding ``in_use_tokens``?"""
        if running >= self.max_running:
            return False
        return not running or in_use_tokens + running + context_tokens + 1 <= self.admit_limit_tokens

    def overflows(self, in_use_tokens: int, growing: int, running: int) -> bool:
        """Would a step that adds one token to ``growing`` sequences overflow the cache, with
        more than one request running (so one may be preempted)?"""
        return running > 1 and in_use_tokens + growing > self.kv_capacity_tokens
