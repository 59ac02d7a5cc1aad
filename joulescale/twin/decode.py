"""A decode instance: continuous batching over a KV cache of fixed capacity, with preemption.

The batch is kept in aggregate so an iteration costs O(1) instead of O(batch): every running
request gains one token per iteration, so the batch's context is ``K = offset + B * n`` where
``n`` counts iterations, and a request finishes at a known iteration (a heap). When the next
iteration would not fit in the cache, the most recently admitted request is preempted (vLLM's
recompute policy): it returns to the front of the queue and its context is prefilled again on
this instance when it is readmitted.
"""

from __future__ import annotations

import heapq
from collections import deque

from joulescale.control.observation import DecodeProgress
from joulescale.profiles import physics
from joulescale.twin.counters import EngineCounters
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.request import SimRequest


class DecodeInstance:
    __slots__ = (
        "_admit_limit_tokens",
        "_finish_heap",
        "_offset",
        "_recompute_s2",
        "_recompute_tokens",
        "busy",
        "counters",
        "end_seq",
        "gpu",
        "incoming",
        "index",
        "iteration",
        "iteration_log",
        "kv_capacity_tokens",
        "max_running",
        "running",
        "waiting",
    )

    def __init__(self, index: int, gpu: SimGpuGroup, kv_capacity_tokens: int, max_running: int,
                 watermark: float) -> None:
        self.index = index
        self.gpu = gpu
        self.kv_capacity_tokens = kv_capacity_tokens
        self.max_running = max_running
        self._admit_limit_tokens = int(kv_capacity_tokens * (1.0 - watermark))
        self.waiting: deque[SimRequest] = deque()
        self.running: dict[int, SimRequest] = {}
        """Admission order (dict order): the newest is the first to be preempted."""
        self.iteration = 0
        self.busy = False
        self.incoming = 0
        """Requests routed here whose KV cache is still in transfer."""
        self.counters = EngineCounters()
        self.iteration_log: list[tuple[int, int, int, int]] = []
        """(B, K, recomputed tokens, their S2) of every iteration run, for the oracle."""
        self._finish_heap: list[tuple[int, int, int, SimRequest]] = []
        self._offset = 0
        self._recompute_tokens = 0
        self._recompute_s2 = 0
        self.end_seq = 0
        """The simulator's number for the event that ends the running step; others are stale."""

    @property
    def context_tokens(self) -> int:
        return self._offset + len(self.running) * self.iteration

    @property
    def kv_cache_usage(self) -> float:
        return min(1.0, self.context_tokens / self.kv_capacity_tokens)

    @property
    def load(self) -> int:
        return len(self.running) + len(self.waiting) + self.incoming

    def enqueue(self, request: SimRequest) -> None:
        request.decode_instance = self.index
        self.waiting.append(request)

    def _context_of(self, request: SimRequest) -> int:
        return request.prompt_tokens + 1 + request.decode_done_tokens

    def _admit(self) -> None:
        waiting = self.waiting
        running = self.running
        n = self.iteration
        while waiting and len(running) < self.max_running:
            head = waiting[0]
            context = self._context_of(head)
            if running and self.context_tokens + len(running) + context + 1 > self._admit_limit_tokens:
                break
            waiting.popleft()
            if head.decode_done_tokens or head.preemptions:
                self._recompute_tokens += context
                self._recompute_s2 += context * context
            head.join_iteration = n
            head.finish_iteration = n + head.decode_tokens - head.decode_done_tokens
            self._offset += context - n
            running[head.request_id] = head
            heapq.heappush(self._finish_heap, (head.finish_iteration, head.request_id, head.epoch, head))

    def _preempt_to_fit(self) -> None:
        running = self.running
        n = self.iteration
        while len(running) > 1 and self.context_tokens + len(running) > self.kv_capacity_tokens:
            _, victim = running.popitem()
            self._offset -= self._context_of(victim) - victim.join_iteration
            victim.decode_done_tokens += n - victim.join_iteration
            victim.epoch += 1
            victim.preemptions += 1
            self.counters.preemptions += 1
            self.waiting.appendleft(victim)

    def prepare_iteration(self) -> bool:
        """Admit and preempt for the next iteration; False when there is nothing to run."""
        self._admit()
        self._preempt_to_fit()
        return bool(self.running)

    def run_iteration(self, now_s: float) -> float:
        """Run the next step; returns its duration as planned now (``gpu.end_s`` may move)."""
        profile = self.gpu.profile
        batch = len(self.running)
        context = self.context_tokens
        recompute = self._recompute_tokens
        recompute_s2 = self._recompute_s2
        self._recompute_tokens = 0
        self._recompute_s2 = 0
        self.iteration_log.append((batch, context, recompute, recompute_s2))

        def latency_s(mhz: int) -> float:
            step_s = physics.decode_latency_s(profile, batch, context, mhz)
            if recompute:
                step_s += physics.prefill_latency_from_sums_s(profile, recompute, recompute_s2, mhz)
            return step_s

        duration_s = self.gpu.run(now_s, latency_s)
        self.busy = True
        return duration_s

    def finish_iteration(self, now_s: float) -> list[SimRequest]:
        """Book the iteration's tokens; returns the requests that completed."""
        self.busy = False
        self.counters.note_iteration(self.gpu.iteration_s)
        self.counters.generation_tokens += len(self.running)
        self.iteration += 1
        n = self.iteration
        done: list[SimRequest] = []
        heap = self._finish_heap
        running = self.running
        while heap and heap[0][0] <= n:
            _, request_id, epoch, request = heapq.heappop(heap)
            if epoch != request.epoch or request_id not in running:
                continue
            del running[request_id]
            self._offset -= self._context_of(request) - request.join_iteration
            request.finish_s = now_s
            done.append(request)
        return done

    def rich_progress(self, now_s: float) -> tuple[DecodeProgress, ...]:
        """The engine hook's view of the running batch."""
        n = self.iteration
        out = []
        for r in self.running.values():
            generated = r.decode_done_tokens + n - r.join_iteration
            out.append(DecodeProgress(generated, now_s - r.first_token_s, r.prompt_tokens + 1 + generated))
        return tuple(out)
