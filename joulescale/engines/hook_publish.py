"""The engine hook's messages made from the core engine model, for the twin and the simulated engine.

A real engine's hook reads its scheduler (vLLM's ``SchedulerOutput`` and waiting queue, SGLang's
batch); the model's state at the same moments holds the same facts, and only those are copied:
prompt lengths, chunk sizes, KV tokens, generated tokens and arrival times on the instance.

``StepHook`` publishes them when a hooked engine would: a step's StepScheduled when its scheduler
decides it, which on an engine that schedules ahead (``EngineDialect.schedules_ahead``) is the
previous step's start, so the message for step N+1 holds only what had arrived by step N's start.
"""

from __future__ import annotations

from itertools import chain, islice
from typing import Any, Protocol

from joulescale.engines.hook import (
    MAX_ENTRIES,
    HookSchedule,
    HookStepDone,
    ScheduledDecode,
    ScheduledPrefill,
)
from joulescale.engines.model.decode import DecodeModel
from joulescale.engines.model.prefill import PrefillModel
from joulescale.engines.observation import QueuedPrompt


class HookSink(Protocol):
    """Where a simulated engine's hook messages go (the twin: the instance's observation builder)."""

    def hook_schedule(self, message: HookSchedule) -> None: ...

    def hook_step_done(self, message: HookStepDone) -> None: ...


def prefill_schedule(model: PrefillModel[Any], step_id: int, now_s: float) -> HookSchedule:
    """What the hook publishes when a prefill instance has just scheduled its running step."""
    step = model.step
    running = tuple(ScheduledPrefill(r.prompt_tokens, r.prefilled_tokens, r.chunk_tokens, r.engine_arrival_s)
                    for r in islice(step, MAX_ENTRIES))
    waiting = [*islice(model.queue, len(step), len(step) + MAX_ENTRIES), *islice(model.arrivals, MAX_ENTRIES)]
    return HookSchedule(step_id, now_s, running, (),
                        tuple(QueuedPrompt(r.prompt_tokens, r.engine_arrival_s) for r in waiting[:MAX_ENTRIES]),
                        prefill_requests=len(step), prefill_tokens=model.step_tokens, decode_requests=0,
                        decode_kv_tokens=0, waiting_requests=model.waiting_count)


def prefill_next_schedule(model: PrefillModel[Any], step_id: int, now_s: float) -> HookSchedule:
    """What the hook publishes when a prefill instance that schedules ahead has decided the step
    after the running one (``model.next_step``): that step, and the requests in neither."""
    planned = model.next_step
    scheduled = {id(r) for r, _, _ in planned}
    scheduled.update(id(r) for r in model.step)
    entries = tuple(ScheduledPrefill(r.prompt_tokens, done, chunk, r.engine_arrival_s)
                    for r, done, chunk in islice(planned, MAX_ENTRIES))
    waiting = tuple(QueuedPrompt(r.prompt_tokens, r.engine_arrival_s)
                    for r in islice((r for r in chain(model.queue, model.arrivals) if id(r) not in scheduled), MAX_ENTRIES))
    new = sum(1 for r, _, _ in planned if not r.chunk_tokens)  # not continuing a chunk of the running step
    return HookSchedule(step_id, now_s, entries, (), waiting, prefill_requests=len(planned),
                        prefill_tokens=sum(chunk for _, _, chunk in planned), decode_requests=0, decode_kv_tokens=0,
                        waiting_requests=model.waiting_count - new)


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


class StepHook:
    """A simulated engine's hook: numbers its steps and publishes each step's StepScheduled when
    the engine's scheduler decides it, and its StepDone when it ends. With a prefill model that
    schedules ahead, a step decided at the previous step's start was published then."""

    __slots__ = ("published", "running", "sink")

    def __init__(self, sink: HookSink) -> None:
        self.sink = sink
        self.published = 0
        """The id of the latest step published."""
        self.running = 0
        """The id of the running (or latest) step."""

    def prefill_started(self, model: PrefillModel[Any], now_s: float) -> bool:
        """After ``model.start_step`` started a step; True when a message went out now."""
        self.running += 1
        sent = False
        if self.running > self.published:  # decided now, not ahead
            self.published = self.running
            self.sink.hook_schedule(prefill_schedule(model, self.running, now_s))
            sent = True
        if model.next_step:
            self.published += 1
            self.sink.hook_schedule(prefill_next_schedule(model, self.published, now_s))
            sent = True
        return sent

    def decode_started(self, model: DecodeModel[Any], now_s: float) -> bool:
        """After ``model.start_step`` started a step (decode steps are decided as they start)."""
        self.running = self.published = self.running + 1
        self.sink.hook_schedule(decode_schedule(model, self.running, now_s))
        return True

    def step_done(self, now_s: float, step_s: float) -> None:
        self.sink.hook_step_done(HookStepDone(self.running, now_s, step_s))
