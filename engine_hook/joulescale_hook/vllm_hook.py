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
from itertools import islice
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
        state = self.__dict__.setdefault("_joulescale", _StepState())
        now = time.monotonic_ns()
        wall_minus_mono = time.time_ns() - now
        requests = self.requests
        p_prompt: list[int] = []
        p_done: list[int] = []
        p_step: list[int] = []
        p_arrival: list[int] = []
        d_kv: list[int] = []
        d_out: list[int] = []
        prefill_tokens = 0
        decode_kv = 0
        for req_id, n in output.num_scheduled_tokens.items():
            req = requests.get(req_id)
            if req is None:
                continue
            computed = req.num_computed_tokens
            prompt = req.num_prompt_tokens
            before = computed - n
            if before < prompt:
                p_prompt.append(prompt)
                p_done.append(before)
                p_step.append(n)
                p_arrival.append(int(req.arrival_time * 1e9) - wall_minus_mono)
                prefill_tokens += min(n, prompt - before)
            else:
                d_kv.append(computed)
                d_out.append(req.num_output_tokens)
                decode_kv += computed
        waiting = self.waiting
        n_waiting = len(waiting)
        if not p_prompt and not d_kv and not n_waiting:
            return  # nothing scheduled and nothing waits: an idle poll, not a step
        w_prompt: list[int] = []
        w_arrival: list[int] = []
        for req in islice(waiting, MAX_ENTRIES):
            w_prompt.append(req.num_prompt_tokens)
            w_arrival.append(int(req.arrival_time * 1e9) - wall_minus_mono)
        step_id = state.next_step
        state.next_step += 1
        state.pending[id(output)] = (step_id, now)
        if len(state.pending) > _PENDING_LIMIT:
            del state.pending[next(iter(state.pending))]
        publisher.publish(StepScheduled(
            Engine.VLLM, step_id, now, len(p_prompt), prefill_tokens, len(d_kv), decode_kv, n_waiting,
            p_prompt, p_done, p_step, p_arrival, d_kv, d_out, w_prompt, w_arrival,
        ))

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
        publisher.publish(StepDone(Engine.VLLM, step_id, now, now - started))


class _StepState:
    __slots__ = ("last_done_ns", "next_step", "pending")

    def __init__(self) -> None:
        self.next_step = 0
        self.last_done_ns = 0
        self.pending: dict[int, tuple[int, int]] = {}
