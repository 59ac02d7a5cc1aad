"""The engines the project knows: which metrics each publishes, with which buckets, and when.

The twin's simulated engines publish through these rules, so a policy in the twin sees a page
as stale and as coarse as the real engine's. Facts from the engines' sources (vLLM v0.11-0.12
``vllm/v1/metrics/loggers.py``; SGLang ``srt/metrics/collector.py`` and the scheduler's
``log_prefill_stats`` / ``log_decode_stats``).

This module owns the list of engines: a new one is one ``register_dialect`` call (the agent adds
its page reader by name, ``joulescale_agent.engines.adapters``). docs/dev/EXTENDING.md, "A new
engine".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, KeysView
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, get_args

QueueTiming = Literal["finish", "schedule"]
"""vLLM books a request's queue time when it finishes; SGLang when it enters a prefill batch."""
GaugeTiming = Literal["step-end", "batch-and-interval"]
"""``step-end``: the scheduler gauges change when a step ends (vLLM V1). ``batch-and-interval``:
they change when a prefill batch forms and every ``decode_log_interval`` decode steps (SGLang)."""
CounterTiming = Literal["step-end", "request-finish"]
"""When the prompt and generation token counters grow: per step (vLLM's IterationStats) or when
a request finishes (SGLang's tokenizer-side collector)."""

VLLM_TTFT_EDGES_S: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
VLLM_ITL_EDGES_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0)
VLLM_REQUEST_TIME_EDGES_S: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0)
"""vLLM's request-phase histograms (queue, prefill, decode, inference, e2e) share these edges."""
VLLM_ITERATION_TOKEN_EDGES: tuple[float, ...] = (
    1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
SGLANG_TTFT_EDGES_S: tuple[float, ...] = (
    0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0,
    400.0)
SGLANG_ITL_EDGES_S: tuple[float, ...] = (
    0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.08, 0.1, 0.2,
    0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0)
SGLANG_QUEUE_EDGES_S: tuple[float, ...] = (
    0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0,
    90.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0, 1200.0, 1400.0,
    1600.0, 1800.0, 2000.0, 2500.0, 3000.0)
"""SGLang's scheduler-side ``queue_time_seconds``, recorded as a request enters a prefill batch
(vLLM records its queue and prefill times when the request finishes)."""
SGLANG_DECODE_LOG_INTERVAL = 40
"""SGLang's ``--decode-log-interval`` default: decode gauges are refreshed every 40 steps."""


@dataclass(frozen=True, slots=True)
class EngineDialect:
    """What one engine publishes on /metrics and when; ``None`` edges: the engine has no such histogram."""

    name: str
    gauges: GaugeTiming
    counters: CounterTiming
    ttft_edges_s: tuple[float, ...]
    itl_edges_s: tuple[float, ...]
    queue_edges_s: tuple[float, ...] | None
    prefill_edges_s: tuple[float, ...] | None
    iteration_token_edges: tuple[float, ...] | None
    decode_log_interval: int = 0
    """Decode steps between two gauge refreshes (``batch-and-interval`` engines only)."""
    queue_time_at: QueueTiming = "finish"
    """When the queue-time histogram records a request (``queue_edges_s`` set)."""
    kv_usage_decimals: int | None = None
    """Decimals the published KV usage is rounded to (SGLang: ``round(token_usage, 2)``); None: exact."""
    schedules_ahead: bool = False
    """The scheduler decides step N+1 while step N runs, so the engine hook publishes a step about
    one step before it starts, and a request arriving during step N waits for step N+2. vLLM: async
    scheduling (the hook's scheduler derives from ``AsyncScheduler``). SGLang: the overlap
    scheduler (on unless ``--disable-overlap-schedule``). The one owner of this fact: the engine
    model (``PrefillModel``) and the hook's messages in the twin and the simulated engine read it
    here (docs/engine-hook.md, "Lead time")."""


def _check(dialect: EngineDialect) -> None:
    """Refuse a dialect the recorder could not keep: a bad name, edges that do not ascend, a
    timing it does not know, a batch-and-interval engine without its interval."""
    bare = dialect.name.replace("-", "")
    if not (bare.isascii() and bare.isalnum()) or dialect.name != dialect.name.lower() or dialect.name[0] == "-":
        raise ValueError(f"engine name {dialect.name!r}: lower-case letters, digits and dashes")
    for field_name, allowed in (("gauges", GaugeTiming), ("counters", CounterTiming), ("queue_time_at", QueueTiming)):
        if getattr(dialect, field_name) not in get_args(allowed):
            raise ValueError(f"{dialect.name}: {field_name} is one of {', '.join(get_args(allowed))}")
    edges = {"ttft_edges_s": dialect.ttft_edges_s, "itl_edges_s": dialect.itl_edges_s,
             "queue_edges_s": dialect.queue_edges_s, "prefill_edges_s": dialect.prefill_edges_s,
             "iteration_token_edges": dialect.iteration_token_edges}
    for field_name, values in edges.items():
        if values is not None and (not values or any(b <= a for a, b in itertools.pairwise(values))):
            raise ValueError(f"{dialect.name}: {field_name} must be non-empty and strictly ascending")
    if (dialect.gauges == "batch-and-interval") != (dialect.decode_log_interval > 0):
        raise ValueError(f"{dialect.name}: decode_log_interval > 0 exactly when gauges='batch-and-interval'")


_DIALECTS: dict[str, EngineDialect] = {}
ENGINE_NAMES: KeysView[str] = _DIALECTS.keys()
"""The registered engines' names, in registration order: a live view, so a CLI's choices and
the twin's checks see an engine registered after their import."""


def register_dialect(dialect: EngineDialect) -> EngineDialect:
    """Add an engine: the one list of engine names (the twin, the CLIs, the agent's adapters and
    e2e's simulated engine read it). docs/dev/EXTENDING.md, "A new engine"."""
    _check(dialect)
    if dialect.name in _DIALECTS:
        raise ValueError(f"engine name already taken: {dialect.name}")
    _DIALECTS[dialect.name] = dialect
    return dialect


@contextmanager
def registered_dialect(dialect: EngineDialect) -> Iterator[EngineDialect]:
    """``dialect`` registered for the block only (tests, experiments)."""
    register_dialect(dialect)
    try:
        yield dialect
    finally:
        del _DIALECTS[dialect.name]


def dialect_for(name: str) -> EngineDialect:
    try:
        return _DIALECTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINE_NAMES)}") from None


VLLM = register_dialect(EngineDialect(
    name="vllm", gauges="step-end", counters="step-end",
    ttft_edges_s=VLLM_TTFT_EDGES_S, itl_edges_s=VLLM_ITL_EDGES_S,
    queue_edges_s=VLLM_REQUEST_TIME_EDGES_S, prefill_edges_s=VLLM_REQUEST_TIME_EDGES_S,
    iteration_token_edges=VLLM_ITERATION_TOKEN_EDGES, schedules_ahead=True,
))
SGLANG = register_dialect(EngineDialect(
    name="sglang", gauges="batch-and-interval", counters="request-finish",
    ttft_edges_s=SGLANG_TTFT_EDGES_S, itl_edges_s=SGLANG_ITL_EDGES_S,
    queue_edges_s=SGLANG_QUEUE_EDGES_S, prefill_edges_s=None, iteration_token_edges=None,
    decode_log_interval=SGLANG_DECODE_LOG_INTERVAL, kv_usage_decimals=2, queue_time_at="schedule",
    schedules_ahead=True,
))
