"""A prefill instance: FIFO queue, batches under a token budget, one batch at a time.

Batching follows the engine rule the twin assumes for P/D prefill instances (vLLM without
chunked prefill): take waiting prompts in arrival order while the batch stays within
``token_budget``; a prompt longer than the budget runs alone.
"""

from __future__ import annotations

from collections import deque

from joulescale.control.observation import QueuedPrompt
from joulescale.profiles import physics
from joulescale.twin.counters import EngineCounters
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.request import SimRequest


class PrefillInstance:
    __slots__ = ("_left_waiting", "_oldest_wait_s", "_s2", "batch", "batch_log", "counters", "end_seq", "gpu", "index",
                 "queued_tokens", "step_end_kv_tokens", "step_end_waiting", "token_budget", "waiting")

    def __init__(self, index: int, gpu: SimGpuGroup, token_budget: int) -> None:
        self.index = index
        self.gpu = gpu
        self.token_budget = token_budget
        self.waiting: deque[SimRequest] = deque()
        self.batch: list[SimRequest] = []
        self.queued_tokens = 0
        """Tokens waiting or in flight: the load the router balances."""
        self.counters = EngineCounters()
        self.batch_log: list[tuple[int, int]] = []
        """(N, S2) of every batch run, for the oracle."""
        self._s2 = 0
        self._left_waiting = 0
        self._oldest_wait_s = 0.0
        self.step_end_waiting = 0
        """Waiting requests as the engine published them at the end of its last step: those its
        scheduler held but did not batch (arrivals during a step reach it only after)."""
        self.step_end_kv_tokens = 0
        """KV tokens in use at the end of the last step: the finished batch, held for the decode
        side to pull (a P/D prefill request ends with its prefill)."""
        self.end_seq = 0
        """The simulator's number for the event that ends the running batch; others are stale."""

    @property
    def busy(self) -> bool:
        return bool(self.batch)

    @property
    def batch_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.batch)

    def enqueue(self, request: SimRequest) -> None:
        self.waiting.append(request)
        self.queued_tokens += request.prompt_tokens

    def form_batch(self, now_s: float) -> None:
        """Move the next batch out of the queue (call only when idle and the queue is non-empty)."""
        tokens = 0
        squared = 0
        batch = self.batch
        waiting = self.waiting
        oldest_wait_s = now_s - waiting[0].arrival_s
        while waiting:
            head = waiting[0]
            if batch and tokens + head.prompt_tokens > self.token_budget:
                break
            waiting.popleft()
            head.prefill_start_s = now_s
            tokens += head.prompt_tokens
            squared += head.prompt_tokens * head.prompt_tokens
            batch.append(head)
        self._s2 = squared
        self._left_waiting = len(waiting)
        self._oldest_wait_s = oldest_wait_s

    def run_batch(self, now_s: float) -> float:
        """Run the formed batch at the instance's clock; returns its duration as planned now (a
        clock change requested while it runs may move its end: ``gpu.end_s``)."""
        profile = self.gpu.profile
        tokens = self.batch_tokens
        squared = self._s2
        self.batch_log.append((tokens, squared))
        return self.gpu.run(now_s, lambda mhz: physics.prefill_latency_from_sums_s(profile, tokens, squared, mhz))

    def finish_batch(self) -> list[SimRequest]:
        done = self.batch
        self.batch = []
        tokens = sum(r.prompt_tokens for r in done)
        # Engines count a step, its tokens and its requests' queue times when it ends (vLLM V1
        # books them from the step's outputs), so a scrape never shows a step still running.
        counters = self.counters
        counters.note_iteration(self.gpu.iteration_s)
        counters.prompt_tokens += tokens
        counters.generation_tokens += len(done)
        counters.max_queue_wait_s = max(counters.max_queue_wait_s, self._oldest_wait_s)
        self.queued_tokens -= tokens
        self.step_end_waiting = self._left_waiting
        self.step_end_kv_tokens = tokens
        return done

    def rich_queue(self) -> tuple[QueuedPrompt, ...]:
        """The engine hook's view: in-flight then waiting prompts, in arrival order."""
        return tuple(QueuedPrompt(r.prompt_tokens, r.arrival_s) for r in (*self.batch, *self.waiting))
