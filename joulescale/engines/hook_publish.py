"""The engine hook's messages made from the core engine model, for the twin and the simulated engine.

A real engine's hook reads its scheduler (vLLM's ``SchedulerOutput`` and waiting queue, SGLang's
batch); the model's state at the same moments holds the same facts, and only those are copied:
prompt lengths, chunk sizes, KV tokens, generated tokens and arrival times on the instance.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Protocol

from joulescale.engines.hook import HookSchedule, HookStepDone, ScheduledDecode, ScheduledPrefill
from joulescale.engines.model.decode import DecodeModel
from joulescale.engines.model.prefill import PrefillModel
from joulescale.engines.observation import QueuedPrompt


class HookSink(Protocol):
    """Where a simulated engine's hook messages go (the twin: the instance's observation builder)."""

    def hook_schedule(self, message: HookSchedule) -> None: ...

    def hook_step_done(self, message: HookStepDone) -> None: ...


def prefill_schedule(model: PrefillModel[Any], step_id: int, now_s: float) -> HookSchedule:
    """What the hook publishes when a prefill instance has just scheduled its step."""
    step = model.step
    queue = model.queue
    running = tuple(ScheduledPrefill(r.prompt_tokens, r.prefilled_tokens, r.chunk_tokens, r.engine_arrival_s)
                    for r in step)
    waiting = [QueuedPrompt(r.prompt_tokens, r.engine_arrival_s) for r in islice(queue, len(step), None)]
    waiting.extend(QueuedPrompt(r.prompt_tokens, r.engine_arrival_s) for r in model.arrivals)
    return HookSchedule(step_id, now_s, running, (), tuple(waiting))


def decode_schedule(model: DecodeModel[Any], step_id: int, now_s: float) -> HookSchedule:
    """What the hook publishes when a decode instance has just scheduled its step."""
    batch = []
    for r in model.running.values():
        generated = model.generated_tokens(r)
        batch.append(ScheduledDecode(r.prompt_tokens + 1 + generated, generated, r.engine_arrival_s))
    waiting = tuple(QueuedPrompt(r.prompt_tokens, r.engine_arrival_s) for r in model.waiting)
    return HookSchedule(step_id, now_s, (), tuple(batch), waiting)
