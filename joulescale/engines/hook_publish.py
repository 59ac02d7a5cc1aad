"""The engine hook's messages made from the core engine model, for the twin and the simulated engine.

A real engine's hook reads its scheduler (vLLM's ``SchedulerOutput`` and waiting queue, SGLang's
batch); the model's state at the same moments holds the same facts, and only those are copied:
prompt lengths, chunk sizes, KV tokens, generated tokens and arrival times on the instance.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Protocol

from joulescale.engines.hook import MAX_ENTRIES, HookSchedule, HookStepDone, ScheduledDecode, ScheduledPrefill
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
    running = tuple(ScheduledPrefill(r.prompt_tokens, r.prefilled_tokens, r.chunk_tokens, r.engine_arrival_s)
                    for r in islice(step, MAX_ENTRIES))
    waiting = [*islice(model.queue, len(step), len(step) + MAX_ENTRIES), *islice(model.arrivals, MAX_ENTRIES)]
    return HookSchedule(step_id, now_s, running, (),
                        tuple(QueuedPrompt(r.prompt_tokens, r.engine_arrival_s) for r in waiting[:MAX_ENTRIES]),
                        prefill_requests=len(step), prefill_tokens=model.step_tokens, decode_requests=0,
                        decode_kv_tokens=0, waiting_requests=model.waiting_count)


def decode_schedule(model: DecodeModel[Any], step_id: int, now_s: float) -> HookSchedule:
    """What the hook publishes when a decode instance has just scheduled its step."""
    batch = []
    for r in islice(model.running.values(), MAX_ENTRIES):
        generated = model.generated_tokens(r)
        batch.append(ScheduledDecode(r.prompt_tokens + 1 + generated, generated))
    waiting = tuple(QueuedPrompt(r.prompt_tokens, r.engine_arrival_s) for r in islice(model.waiting, MAX_ENTRIES))
    return HookSchedule(step_id, now_s, (), tuple(batch), waiting, prefill_requests=0, prefill_tokens=0,
                        decode_requests=len(model.running), decode_kv_tokens=model.context_tokens,
                        waiting_requests=len(model.waiting))
