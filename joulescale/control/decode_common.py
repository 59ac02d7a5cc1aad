"""Decode pieces shared by the policies: the batch seen by an observation, the KV guard."""

from __future__ import annotations

from joulescale.control.context import PolicyContext
from joulescale.engines.observation import Observation


def decode_batch(observation: Observation) -> tuple[int, int]:
    """(sequences B, context tokens K): exact in the rich view, from the gauges otherwise."""
    if observation.decoding:
        return len(observation.decoding), sum(r.context_tokens for r in observation.decoding)
    return observation.running_requests, observation.context_tokens


def kv_pressure(observation: Observation, context: PolicyContext) -> bool:
    """BiScale's KV guard: the KV cache is nearly full or requests are being preempted."""
    return observation.kv_cache_usage >= context.settings.decode.kv_guard_usage or observation.preemptions_delta > 0
