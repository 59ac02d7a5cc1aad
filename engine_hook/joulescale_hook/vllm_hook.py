"""The vLLM side of the hook, as a mixin over any vLLM v1 scheduler class.

``schedule()`` returns the step it has just decided; by then vLLM has advanced each scheduled
request's ``num_computed_tokens`` by its scheduled tokens, so a request is in prefill when the
tokens computed before this step are fewer than its prompt (a chunk of a long prompt is prefill
too). Under async scheduling this runs while the previous step executes: the agent learns of a
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
from itertools import islice
from operator import attrgetter
from typing import Any

from joulescale_hook import runtime
from joulescale_hook.schema import MAX_ENTRIES, Engine, StepDone, StepScheduled

_COMPUTED = attrgetter("num_computed_tokens")
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
        # Snapshot on the engine's thread only what changes once schedule() returns (the
        # computed tokens, the queue's membership); a request's prompt length and arrival time are
        # fixed at its creation, so the sender thread reads them and builds the message.
        scheduled = output.num_scheduled_tokens
        reqs = list(map(self.requests.__getitem__, scheduled))
        if not reqs and not self.waiting:
            return  # nothing scheduled and nothing waits: an idle poll, not a step
        computed = list(map(_COMPUTED, reqs))
        tokens = list(scheduled.values())
        n_waiting = len(self.waiting)
        queued = list(islice(self.waiting, MAX_ENTRIES))
        step_id = state.next_step
        state.next_step += 1
        state.pending[id(output)] = (step_id, now)
        if len(state.pending) > _PENDING_LIMIT:
            del state.pending[next(iter(state.pending))]
        publisher.publish(partial(build_scheduled, step_id, now, wall_minus_mono, reqs, computed, tokens,
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


def build_scheduled(step_id: int, now_ns: int, wall_minus_mono_ns: int, reqs: list[Any],
                    computed: list[int], tokens: list[int], queued: list[Any],
                    n_waiting: int) -> StepScheduled:
    """The message from a snapshot, on the sender thread: per scheduled request its computed
    tokens after the step and the tokens scheduled in it; the waiting requests. A decode request's
    output tokens are its KV tokens past its prompt: what it has generated, or has in flight under
    async scheduling, when the step runs (vLLM's ``num_output_tokens`` would change meanwhile)."""
    p_prompt: list[int] = []
    p_done: list[int] = []
    p_step: list[int] = []
    p_arrival: list[int] = []
    d_kv: list[int] = []
    d_out: list[int] = []
    prefill_tokens = 0
    for req, kv, n in zip(reqs, computed, tokens, strict=True):
        prompt = req.num_prompt_tokens
        before = kv - n
        if before < prompt:
            p_prompt.append(prompt)
            p_done.append(before)
            p_step.append(n)
            p_arrival.append(int(req.arrival_time * 1e9) - wall_minus_mono_ns)
            prefill_tokens += min(n, prompt - before)
        else:
            d_kv.append(kv)
            d_out.append(kv - prompt)
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
