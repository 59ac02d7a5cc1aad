"""What a clock policy may see of one engine instance at one decision point.

It belongs to the engines layer: the observation builder (observe.py) makes it from engine
samples, and the control layer above only reads it.

Two views exist (docs/architecture.md, "What a policy can observe"): the metrics-only view that the
agent can build from the engine's /metrics page in production, and the richer engine-hook
view with per-request detail. Fields of the rich view are ``None`` in the metrics-only view;
every policy must work without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Phase = Literal["prefill", "decode"]
PHASES: tuple[Phase, ...] = ("prefill", "decode")


@dataclass(frozen=True, slots=True)
class QueuedPrompt:
    """A prefill request known through the engine hook (rich view only)."""

    prompt_tokens: int
    arrival_s: float
    """When the request arrived, on the same clock as ``Observation.now_s``."""


@dataclass(frozen=True, slots=True)
class DecodeProgress:
    """A running decode request known through the engine hook (rich view only)."""

    output_tokens: int
    """Tokens generated so far, the first one (from prefill) excluded."""
    decode_seconds: float
    """Time spent since the first token, so the realised TPOT is decode_seconds / output_tokens."""
    context_tokens: int


@dataclass(frozen=True, slots=True)
class Observation:
    """One engine instance seen at ``now_s``; counters are deltas since the previous observation."""

    phase: Phase
    now_s: float
    """Monotonic time of the observation in seconds (virtual in the twin)."""
    sm_clock_mhz: int
    """The SM clock currently applied to the instance's GPUs."""
    running_requests: int
    waiting_requests: int
    kv_cache_usage: float
    """Fraction 0..1 of the KV cache in use."""
    context_tokens: int
    """Decode: total context tokens of the running batch (K); prefill: tokens of the batch in flight.
    In the metrics-only view an estimate (KV usage x KV capacity in tokens)."""
    prompt_tokens_delta: int = 0
    generation_tokens_delta: int = 0
    iterations_delta: int = 0
    """Engine steps completed since the previous observation."""
    preemptions_delta: int = 0
    interval_s: float = 0.0
    """Time since the previous observation (0 on the first)."""
    last_iteration_s: float | None = None
    """Measured duration of the latest engine step, when known (engine hook only: no engine's
    /metrics page carries it, so it is None in the metrics-only view)."""
    mean_iteration_s: float | None = None
    """Mean step duration over the interval, when known. Metrics-only view: decode, the
    inter-token latency's mean; prefill, the mean prefill time of the requests whose first token
    came in the interval (engines.substitutes)."""
    oldest_wait_s: float | None = None
    """Longest time any waiting request has queued (rich view); in the metrics-only view a lower
    bound of the longest wait the queue-time histogram recorded in the interval."""
    recorded_wait_s: float | None = None
    """Metrics-only view: a lower bound of the longest queueing time among the requests the
    queue-time histogram recorded in the interval, whether or not any request waits now (vLLM
    records a request when it finishes, so on a P/D prefill instance these are the batches that
    ended; SGLang as it is scheduled). None when it recorded none or the engine has no such
    histogram."""
    recorded_wait_cap_s: float | None = None
    """Metrics-only view: an upper bound of that same longest queueing time (the waits' sum, the
    upper edge of the highest non-empty bucket); None with ``recorded_wait_s``."""
    queue: tuple[QueuedPrompt, ...] | None = None
    """Rich view: waiting and not-yet-finished prefill requests, in arrival order."""
    decoding: tuple[DecodeProgress, ...] | None = None
    """Rich view: the running decode requests."""
    colocated: bool = False
    """The prefill view of an aggregated instance: its ``running_requests`` is the one prompt
    assumed in flight while prompts wait, not a batch the page shows (it never shows one)."""

    @property
    def idle(self) -> bool:
        return self.running_requests == 0 and self.waiting_requests == 0
