"""The vLLM side of the hook, as a mixin over any vLLM v1 scheduler class.

``schedule()`` returns the step it has just decided as a ``SchedulerOutput`` whose per-request
counts were taken before the step: a request is in prefill when the tokens computed before this
step are fewer than its prompt (a chunk of a long prompt is prefill too). Under async scheduling this runs while the previous step executes: the agent learns of a
step about one step before it starts. ``update_from_output()`` processes the step's output; its
measured duration is the time from the later of the step's scheduling and the previous step's
end to now, since the GPU runs steps one after another.

This module never imports vLLM: ``joulescale_hook.vllm_scheduler`` puts the mixin over the real
class, and the tests over a stand-in with the pinned signatures (tests/hook/pinned_signatures.py).
Every name read here is in that table.
"""

from __future__ import annotations

import time
from functools import partial
from itertools import islice, repeat
from typing import Any

from joulescale_hook import runtime
from joulescale_hook.schema import MAX_ENTRIES, Engine, StepDone, StepScheduled

_PENDING_LIMIT = 64
"""Scheduled steps whose output is not processed yet; vLLM keeps at most a few in flight."""


class HookedSchedulerMixin:
    """Publishes each step's batch from ``schedule()`` and its duration from
    ``update_from_output()``; whatever fails in here is counted, never raised into vLLM."""

    requests: dict[str, Any]
    waiting: Any

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        output = super().schedule(*args, **kwargs)  # type: ignore[misc]
        try:
            self._joulescale_scheduled(output)
        except Exception:
            runtime.record_failure("schedule")
        return output

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        result = super().update_from_output(scheduler_output, model_runner_output)  # type: ignore[misc]
        try:
            self._joulescale_done(scheduler_output)
        except Exception:
            runtime.record_failure("update_from_output")
        return result

    def _joulescale_scheduled(self, output: Any) -> None:
        publisher = runtime.process_publisher()
        if publisher is None:
            return
        state = self.__dict__.get("_joulescale")
        if state is None:
            state = self.__dict__["_joulescale"] = _StepState()
        now = time.monotonic_ns()
        wall_minus_mono = time.time_ns() - now
        # On the engine's thread only what changes once schedule() returns: the waiting queue's
        # members. The SchedulerOutput is built anew each step and read-only afterwards (its
        # per-request counts are taken before the step), and a request's prompt length and
        # arrival time are fixed at its creation: the sender thread reads those and builds the
        # message (build_scheduled).
        waiting = self.waiting
        n_waiting = len(waiting)
        if not output.num_scheduled_tokens and not n_waiting:
            return  # nothing scheduled and nothing waits: an idle poll, not a step
        queued = list(islice(waiting, MAX_ENTRIES))
        step_id = state.next_step
        state.next_step += 1
        state.pending[id(output)] = (step_id, now)
        if len(state.pending) > _PENDING_LIMIT:
            del state.pending[next(iter(state.pending))]
        publisher.publish(partial(build_scheduled, step_id, now, wall_minus_mono, output, self.requests,
                                  queued, n_waiting))

    def _joulescale_done(self, scheduler_output: Any) -> None:
        state = self.__dict__.get("_joulescale")
        if state is None:
            return
        entry = state.pending.pop(id(scheduler_output), None)
        if entry is None:
            return
        publisher = runtime.process_publisher()
        if publisher is None:
            return
        step_id, scheduled_ns = entry
        now = time.monotonic_ns()
        started = max(scheduled_ns, state.last_done_ns)
        state.last_done_ns = now
        publisher.publish(StepDone(Engine.VLLM, step_id, now, now - started), wake=False)


def build_scheduled(step_id: int, now_ns: int, wall_minus_mono_ns: int, output: Any,
                    requests: dict[str, Any], queued: list[Any], n_waiting: int) -> StepScheduled:
    """The message, on the sender thread, from the step's ``SchedulerOutput``: new requests
    (``scheduled_new_reqs``) and running ones (``scheduled_cached_reqs``) with their computed
    tokens before the step; ``num_scheduled_tokens`` the step's tokens per request. A request is
    in prefill while the tokens computed before the step are fewer than its prompt; a decode
    request's output tokens are those generated or in flight (async scheduling) when it runs.
    A request that finished before this ran (gone from ``requests``) is classified by its output
    tokens and gets the step's time as its arrival."""
    tokens = output.num_scheduled_tokens
    rows: list[tuple[str, int, int | None, int]] = []
    for new in output.scheduled_new_reqs:
        prompt_ids = new.prompt_token_ids
        rows.append((new.req_id, new.num_computed_tokens, None if prompt_ids is None else len(prompt_ids), 0))
    cached = output.scheduled_cached_reqs
    rows.extend(zip(cached.req_ids, cached.num_computed_tokens, repeat(None), cached.num_output_tokens,
                    strict=False))
    p_prompt: list[int] = []
    p_done: list[int] = []
    p_step: list[int] = []
    p_arrival: list[int] = []
    d_kv: list[int] = []
    d_out: list[int] = []
    prefill_tokens = 0
    for req_id, before, prompt, outputs in rows:
        n = tokens.get(req_id, 0)
        req = requests.get(req_id)
        if prompt is None:
            prompt = req.num_prompt_tokens if req is not None else (before + n if outputs == 0 else before)
        if before < prompt:
            p_prompt.append(prompt)
            p_done.append(before)
            p_step.append(n)
            p_arrival.append(now_ns if req is None else int(req.arrival_time * 1e9) - wall_minus_mono_ns)
            prefill_tokens += min(n, prompt - before)
        else:
            d_kv.append(before + n)
            d_out.append(outputs)
    return StepScheduled(
        Engine.VLLM, step_id, now_ns, len(p_prompt), prefill_tokens, len(d_kv), sum(d_kv), n_waiting,
        p_prompt, p_done, p_step, p_arrival, d_kv, d_out,
        [req.num_prompt_tokens for req in queued],
        [int(req.arrival_time * 1e9) - wall_minus_mono_ns for req in queued],
    )


class _StepState:
    __slots__ = ("last_done_ns", "next_step", "pending")

    def __init__(self) -> None:
        self.next_step = 0
        self.last_done_ns = 0
        self.pending: dict[int, tuple[int, int]] = {}
