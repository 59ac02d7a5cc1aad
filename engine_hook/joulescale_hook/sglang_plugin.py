"""The SGLang side of the hook: a general plugin (entry-point group ``sglang.srt.plugins``,
enabled by ``SGLANG_PLUGINS=joulescale_hook``) that registers two hooks with SGLang's
``HookRegistry``:

- BEFORE ``Scheduler.run_batch``: the batch about to be launched (``forward_mode``, per request
  ``prefix_lens``/``extend_lens`` on an extend batch, ``seqlen`` and ``output_ids`` on decode) and
  the waiting queue;
- AFTER ``Scheduler.process_batch_result``: the step's measured duration. Not AFTER
  ``run_batch``: with the overlap scheduler ``run_batch`` returns once the forward pass is
  launched, and its result is processed one iteration later. Results are processed in launch
  order, so the hook pairs them first in, first out.

SGLang stamps times with ``time.perf_counter()``, which on Linux reads CLOCK_MONOTONIC, the
clock of the messages. Every name read here is in tests/hook/pinned_signatures.py.
"""

from __future__ import annotations

import time
from collections import deque
from itertools import islice
from typing import Any

from joulescale_hook import runtime
from joulescale_hook.schema import MAX_ENTRIES, Engine, StepDone, StepScheduled

RUN_BATCH = "sglang.srt.managers.scheduler.Scheduler.run_batch"
PROCESS_RESULT = "sglang.srt.managers.scheduler.Scheduler.process_batch_result"
_IN_FLIGHT_LIMIT = 64


class _Steps:
    def __init__(self) -> None:
        self.next_step = 0
        self.last_done_ns = 0
        self.launched: deque[tuple[int, int]] = deque(maxlen=_IN_FLIGHT_LIMIT)


_steps = _Steps()


def register() -> None:
    """The entry point SGLang calls in each of its processes."""
    try:
        from sglang.srt.plugins.hook_registry import HookRegistry, HookType

        HookRegistry.register(RUN_BATCH, before_run_batch, HookType.BEFORE)
        HookRegistry.register(PROCESS_RESULT, after_process_batch_result, HookType.AFTER)
    except Exception:
        runtime.record_failure("register")


def before_run_batch(scheduler: Any, batch: Any, *args: Any, **kwargs: Any) -> None:
    """BEFORE hook: returns None, so SGLang calls ``run_batch`` with its own arguments."""
    try:
        _publish_batch(scheduler, batch)
    except Exception:
        runtime.record_failure("run_batch")


def after_process_batch_result(result: Any, scheduler: Any, *args: Any, **kwargs: Any) -> None:
    """AFTER hook: returns None, so SGLang keeps the original result."""
    try:
        _publish_done()
    except Exception:
        runtime.record_failure("process_batch_result")


def _ns(perf_counter_s: float) -> int:
    return int(perf_counter_s * 1e9)


def _publish_batch(scheduler: Any, batch: Any) -> None:
    publisher = runtime.process_publisher()
    if publisher is None or batch is None:
        return
    now = time.monotonic_ns()
    p_prompt: list[int] = []
    p_done: list[int] = []
    p_step: list[int] = []
    p_arrival: list[int] = []
    d_kv: list[int] = []
    d_out: list[int] = []
    prefill_tokens = 0
    decode_kv = 0
    mode = batch.forward_mode
    if mode.is_extend():
        for req, prefix, extend in zip(batch.reqs, batch.prefix_lens, batch.extend_lens, strict=False):
            prompt = len(req.origin_input_ids)
            if prefix < prompt:
                p_prompt.append(prompt)
                p_done.append(prefix)
                p_step.append(extend)
                p_arrival.append(_ns(req.time_stats.scheduler_recv_time))
                prefill_tokens += min(extend, prompt - prefix)
            else:  # a decode request riding in a mixed batch
                d_kv.append(req.seqlen)
                d_out.append(len(req.output_ids))
                decode_kv += req.seqlen
    elif mode.is_decode():
        for req in batch.reqs:
            kv = req.seqlen
            d_kv.append(kv)
            d_out.append(len(req.output_ids))
            decode_kv += kv
    else:
        # An idle batch launches no work, but its result is processed like any other: keep the
        # first-in first-out pairing in step with SGLang's.
        _steps.launched.append((-1, now))
        return
    waiting = scheduler.waiting_queue
    w_prompt: list[int] = []
    w_arrival: list[int] = []
    for req in islice(waiting, MAX_ENTRIES):
        w_prompt.append(len(req.origin_input_ids))
        w_arrival.append(_ns(req.time_stats.scheduler_recv_time))
    step_id = _steps.next_step
    _steps.next_step += 1
    _steps.launched.append((step_id, now))
    publisher.publish(StepScheduled(
        Engine.SGLANG, step_id, now, len(p_prompt), prefill_tokens, len(d_kv), decode_kv, len(waiting),
        p_prompt, p_done, p_step, p_arrival, d_kv, d_out, w_prompt, w_arrival,
    ))


def _publish_done() -> None:
    publisher = runtime.process_publisher()
    if publisher is None or not _steps.launched:
        return
    step_id, launched_ns = _steps.launched.popleft()
    if step_id < 0:
        return
    now = time.monotonic_ns()
    started = max(launched_ns, _steps.last_done_ns)
    _steps.last_done_ns = now
    publisher.publish(StepDone(Engine.SGLANG, step_id, now, now - started), wake=False)


def reset() -> None:
    """Forget the step bookkeeping (tests)."""
    global _steps
    _steps = _Steps()
