"""A decode instance: continuous batching over a KV cache of fixed capacity, with preemption.

The batch is kept in aggregate so a step costs O(1) instead of O(batch): every running request
gains one token per step, so the batch's context is ``K = offset + B * n`` where ``n`` counts
steps, and a request finishes at a known step (a heap). Admission and preemption follow
``kv_rules`` (shared with the aggregated model); a preempted request's context is prefilled again
in the step that readmits it. The aggregated model (``aggregated``) runs its decode batch on
this class through ``join`` and ``preempt_to_fit``.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Generic, TypeVar

from joulescale.engines.model.kv_rules import KvRules
from joulescale.engines.model.request import EngineRequest
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile

R = TypeVar("R", bound=EngineRequest)
"""The caller's request type (a subclass may carry the caller's own fields)."""


class DecodeModel(Generic[R]):
    """The scheduler of one decode instance; the caller drives time (``joulescale.engines.model``)."""

    __slots__ = (
        "_admitted",
        "_finish_heap",
        "_offset",
        "_recompute_s2",
        "_recompute_tokens",
        "_step_batch",
        "_step_context",
        "busy",
        "iteration",
        "iteration_log",
        "kv_capacity_tokens",
        "max_running",
        "profile",
        "recorder",
        "rules",
        "running",
        "waiting",
    )

    def __init__(self, profile: GpuProfile, kv_capacity_tokens: int, max_running: int, watermark: float,
                 recorder: MetricsRecorder | None = None) -> None:
        self.rules = KvRules(kv_capacity_tokens, max_running, watermark)
        self.profile = profile
        self.kv_capacity_tokens = kv_capacity_tokens
        self.max_running = max_running
        self.recorder = recorder
        self.waiting: deque[R] = deque()
        self.running: dict[int, R] = {}
        """Admission order (dict order): the newest is the first to be preempted."""
        self.iteration = 0
        self.busy = False
        self.iteration_log: list[tuple[int, int, int, int]] = []
        """(B, K, recomputed tokens, their S2) of every step run, for the oracle."""
        self._finish_heap: list[tuple[int, int, int, R]] = []
        self._offset = 0
        self._recompute_tokens = 0
        self._recompute_s2 = 0
        self._admitted: list[R] = []
        """Admitted for the running step: their token is a first token or follows a gap."""
        self._step_batch = 0
        self._step_context = 0

    @property
    def context_tokens(self) -> int:
        return self._offset + len(self.running) * self.iteration

    @property
    def kv_cache_usage(self) -> float:
        return min(1.0, self.context_tokens / self.kv_capacity_tokens)

    def enqueue(self, request: R, now_s: float) -> None:
        """A request whose KV cache has landed joins the queue (admitted at the next step)."""
        request.arrive(now_s)
        self.waiting.append(request)

    @staticmethod
    def _context_of(request: EngineRequest) -> int:
        return request.prompt_tokens + 1 + request.decode_done_tokens

    def _admit(self, now_s: float) -> None:
        waiting = self.waiting
        running = self.running
        rules = self.rules
        while waiting:
            head = waiting[0]
            context = self._context_of(head)
            if not rules.admits(self.context_tokens, len(running), context):
                break
            waiting.popleft()
            if head.decode_done_tokens or head.preemptions:
                self._recompute_tokens += context
                self._recompute_s2 += context * context
            if head.scheduled_s < 0.0:
                head.scheduled_s = now_s
            self.join(head)
            self._admitted.append(head)

    def join(self, request: R) -> None:
        """Put a request whose context is in the cache into the running batch, at the next step
        (no admission check, no first token: the aggregated model's prompts after their prefill)."""
        n = self.iteration
        request.join_iteration = n
        request.finish_iteration = n + request.decode_tokens - request.decode_done_tokens
        self._offset += self._context_of(request) - n
        self.running[request.request_id] = request
        heapq.heappush(self._finish_heap, (request.finish_iteration, request.request_id, request.epoch, request))

    def preempt_to_fit(self, now_s: float, reserved_tokens: int = 0) -> None:
        """Preempt the newest requests until the next step's tokens fit beside ``reserved_tokens``
        held by others (the aggregated model's prompts in prefill). Admission leaves room for one
        more token per running request, so the victims always ran a step already."""
        running = self.running
        n = self.iteration
        rules = self.rules
        while rules.overflows(self.context_tokens + reserved_tokens, len(running), len(running)):
            _, victim = running.popitem()
            self._offset -= self._context_of(victim) - victim.join_iteration
            victim.decode_done_tokens += n - victim.join_iteration
            victim.last_token_s = now_s  # its latest token came with the step that just ended
            victim.epoch += 1
            victim.preemptions += 1
            if self.recorder is not None:
                self.recorder.preempted()
            self.waiting.appendleft(victim)

    def start_step(self, now_s: float) -> bool:
        """Admit and preempt for the next step (call when not busy); False when nothing runs."""
        if self.waiting:
            self._admit(now_s)
        running = self.running
        batch = len(running)
        if batch > 1 and self._offset + batch * self.iteration + batch > self.kv_capacity_tokens:
            self.preempt_to_fit(now_s)  # the inline test keeps the common step cheap
        if not running:
            return False
        self.begin_step()
        return True

    def begin_step(self) -> None:
        """Fix the running batch for the next step (after admission and preemption)."""
        batch = len(self.running)
        context = self._offset + batch * self.iteration
        self._step_batch = batch
        self._step_context = context
        self.iteration_log.append((batch, context, self._recompute_tokens, self._recompute_s2))
        self.busy = True

    @property
    def step_sequences(self) -> int:
        """Sequences in the running step: the batch its power depends on (``physics.busy_power_watts``)."""
        return self._step_batch

    def _step_kernels_s(self, sm_clock_mhz: float) -> float:
        step_s = physics.decode_gpu_s(self.profile, self._step_batch, self._step_context, sm_clock_mhz)
        if self._recompute_tokens:
            step_s += physics.prefill_gpu_s(self.profile, self._recompute_tokens, self._recompute_s2, sm_clock_mhz,
                                            self._step_batch, "decode")
        return step_s

    def step_latency_s(self, sm_clock_mhz: float) -> float:
        """The running step's duration at a clock: a decode step plus the prefill of readmitted
        contexts, plus the step overhead."""
        return self._step_kernels_s(sm_clock_mhz) + physics.step_overhead_s(self.profile, self._step_batch)

    def step_power_watts(self, sm_clock_mhz: float) -> float:
        """One GPU's power over the running step at a clock (readmitted prefill at decode power)."""
        return physics.step_power_watts(self.profile, self._step_kernels_s(sm_clock_mhz), 0.0,
                                        physics.step_overhead_s(self.profile, self._step_batch), sm_clock_mhz,
                                        self._step_batch, 0)

    def finish_step(self, now_s: float, step_s: float) -> list[R]:
        """End the running step at ``now_s`` after ``step_s``; returns the requests it completed."""
        self.busy = False
        batch = len(self.running)
        recompute = self._recompute_tokens
        self._recompute_tokens = 0
        self._recompute_s2 = 0
        recorder = self.recorder
        first_prompts = 0
        fresh = resumed = 0
        if self._admitted:
            for request in self._admitted:
                if request.engine_first_token_s < 0.0:
                    request.engine_first_token_s = now_s
                    first_prompts += request.prompt_tokens
                    fresh += 1
                    if recorder is not None:
                        recorder.first_token(now_s - request.engine_arrival_s)
                else:
                    resumed += 1
                    if recorder is not None:
                        recorder.token_after_gap(now_s - request.last_token_s)
            self._admitted.clear()
        self.iteration += 1
        n = self.iteration
        heap = self._finish_heap
        running = self.running
        done: list[R] = []
        while heap and heap[0][0] <= n:
            _, request_id, epoch, request = heapq.heappop(heap)
            if epoch != request.epoch or request_id not in running:
                continue
            del running[request_id]
            self._offset -= self._context_of(request) - request.join_iteration
            request.last_token_s = now_s
            done.append(request)
            if recorder is not None:
                recorder.request_finished(prompt_tokens=request.prompt_tokens,
                                          generated_tokens=request.decode_tokens,
                                          queue_s=request.scheduled_s - request.engine_arrival_s,
                                          prefill_s=request.engine_first_token_s - request.scheduled_s)
        if recorder is not None:
            recorder.step_ended(scheduled_tokens=batch + recompute, prompt_tokens=first_prompts,
                                generated_tokens=batch, itl_tokens=batch - fresh - resumed, step_s=step_s,
                                running=len(running), waiting=len(self.waiting),
                                kv_tokens=self._offset + len(running) * n, decode=True)
        return done

    def generated_tokens(self, request: EngineRequest) -> int:
        """Decode tokens a running request has produced so far, its earlier admissions included."""
        return request.decode_done_tokens + self.iteration - request.join_iteration
