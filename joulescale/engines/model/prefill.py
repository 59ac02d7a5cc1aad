"""A P/D prefill instance: FIFO queue, chunked prefill under a token budget, one step at a time.

vLLM V1 schedules with chunked prefill by default: each step's token budget
(``--max-num-batched-tokens``, ``joulescale.batching``) is filled in arrival order; a prompt
longer than the budget, or one that does not fit in what the step has left, is split, and its
next chunk leads the next step. A request's prefill ends with its last chunk, and on a P/D
prefill instance so does the request (its KV cache is then pulled by a decode instance).

Cost of a chunk: physics gives a batch's prefill time at f_max as
``base + a * N + b * S2``, with N the batch's tokens and S2 the sum of its prompts' squared
lengths, the ``b`` term being attention (every token attends to the tokens before it). A chunk
of ``c`` tokens after ``p`` already-prefilled tokens attends to the prefix as well, so its share
is the quadratic term's growth from ``p`` to ``p + c`` tokens: ``(p + c)^2 - p^2 = c^2 + 2pc``.
The chunks of one prompt therefore sum to the unchunked ``L^2``; only ``base`` is paid once per
step.

Scheduling ahead (``schedules_ahead``, the engine dialect's ``schedules_ahead``): vLLM's async
scheduling and SGLang's overlap scheduler decide step N+1 while step N runs, so a prompt arriving
during step N cannot join step N+1 (it waits for N+2), and step N+1 is fixed at step N's start
(``next_step``). With nothing decided ahead (the engine was idle, or nothing was left to schedule
when step N started), the next step is decided when it starts, from everything arrived by then.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from joulescale.engines.model.request import EngineRequest
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile


def chunk_squared_tokens(prefilled_tokens: int, chunk_tokens: int) -> int:
    """A chunk's contribution to S2: its attention over itself and the prefix (module docstring)."""
    return chunk_tokens * (chunk_tokens + 2 * prefilled_tokens)


R = TypeVar("R", bound=EngineRequest)
"""The caller's request type (a subclass may carry the caller's own fields)."""


class PrefillModel(Generic[R]):
    """The scheduler of one prefill instance; the caller drives time (``joulescale.engines.model``)."""

    __slots__ = ("_held_tokens", "_step_squared", "_step_tokens", "arrivals", "batch_log", "next_step", "profile",
                 "queue", "queued_tokens", "recorder", "schedules_ahead", "step", "token_budget")

    def __init__(self, profile: GpuProfile, token_budget: int, recorder: MetricsRecorder | None = None,
                 schedules_ahead: bool = False) -> None:
        if token_budget < 1:
            raise ValueError("token_budget must be positive")
        self.profile = profile
        self.token_budget = token_budget
        self.recorder = recorder
        self.schedules_ahead = schedules_ahead
        self.arrivals: deque[R] = deque()
        """Requests that reached the engine since the scheduler last looked: it sees them at its
        next call (the next step's start, or with ``schedules_ahead`` the running step's start)."""
        self.queue: deque[R] = deque()
        """The scheduler's requests in arrival order; the head may be partly prefilled."""
        self.step: list[R] = []
        """Requests with a chunk in the running step (a prefix of ``queue``)."""
        self.next_step: list[tuple[R, int, int]] = []
        """With ``schedules_ahead``: the step decided at the running step's start, as (request,
        prompt tokens computed before it, its chunk); empty when nothing was left to decide."""
        self.queued_tokens = 0
        """Prompt tokens not yet prefilled (arrived, queued or in flight): the load a router balances."""
        self.batch_log: list[tuple[int, int, int]] = []
        """(N, S2, prompts) of every step run, chunks counted as above, for the oracle."""
        self._step_tokens = 0
        self._step_squared = 0
        self._held_tokens = 0

    @property
    def busy(self) -> bool:
        return bool(self.step)

    @property
    def has_work(self) -> bool:
        return bool(self.queue or self.arrivals)

    @property
    def step_tokens(self) -> int:
        return self._step_tokens

    @property
    def waiting_count(self) -> int:
        """Requests not yet scheduled, those still in arrival included."""
        return len(self.queue) + len(self.arrivals) - len(self.step)

    def enqueue(self, request: R, now_s: float) -> None:
        request.arrive(now_s)
        self.arrivals.append(request)
        self.queued_tokens += request.prompt_tokens

    def start_step(self, now_s: float) -> bool:
        """Start the next step (call when not busy); False when there is nothing to run. With
        ``schedules_ahead`` the step after it is decided now too (``next_step``)."""
        planned = self.next_step
        if planned:
            self.next_step = []
        else:
            self._admit_arrivals()
            planned = self._fill()
        step = self.step
        tokens = 0
        squared = 0
        for request, done, chunk in planned:
            request.chunk_tokens = chunk
            if request.scheduled_s < 0.0:
                request.scheduled_s = now_s
                if self.recorder is not None:
                    self.recorder.request_scheduled(now_s - request.engine_arrival_s)
            tokens += chunk
            squared += chunk_squared_tokens(done, chunk)
            step.append(request)
        if not step:
            return False
        self._step_tokens = tokens
        self._step_squared = squared
        self.batch_log.append((tokens, squared, len(step)))
        if self.recorder is not None:
            # No decode batch runs on a P/D prefill instance; the cache holds what the last step
            # left (the partly prefilled head, the finished prompts awaiting their pull).
            self.recorder.batch_formed(0, len(self.queue) - len(step), self._held_tokens)
        if self.schedules_ahead:
            self._admit_arrivals()
            self.next_step = self._fill()
        return True

    def _admit_arrivals(self) -> None:
        if self.arrivals:
            self.queue.extend(self.arrivals)
            self.arrivals.clear()

    def _fill(self) -> list[tuple[R, int, int]]:
        """A step in arrival order under the token budget, after the running step's chunks:
        (request, prompt tokens computed before it, its chunk)."""
        left = self.token_budget
        chosen: list[tuple[R, int, int]] = []
        for request in self.queue:
            if left <= 0:
                break
            done = request.prefilled_tokens + request.chunk_tokens
            chunk = min(request.prompt_tokens - done, left)
            if chunk > 0:
                chosen.append((request, done, chunk))
                left -= chunk
        return chosen

    @property
    def step_sequences(self) -> int:
        """Prompts with a chunk in the running step: the batch its power depends on."""
        return len(self.step)

    def step_latency_s(self, sm_clock_mhz: float) -> float:
        """The running step's duration at a clock (the caller's GPU may change it mid-step)."""
        return physics.prefill_latency_from_sums_s(self.profile, self._step_tokens, self._step_squared, sm_clock_mhz,
                                                   len(self.step))

    def step_power_watts(self, sm_clock_mhz: float) -> float:
        """One GPU's power over the running step at a clock (its overhead's idle share at idle power)."""
        prompts = len(self.step)
        return physics.step_power_watts(
            self.profile, 0.0,
            physics.prefill_gpu_s(self.profile, self._step_tokens, self._step_squared, sm_clock_mhz, prompts),
            physics.step_overhead_s(self.profile, prompts), sm_clock_mhz, 0, prompts)

    def finish_step(self, now_s: float, step_s: float) -> list[R]:
        """End the running step at ``now_s`` after ``step_s``; returns the requests whose prefill
        (and so whose stay on this P/D prefill instance) it completed."""
        queue = self.queue
        for request in self.step:
            request.prefilled_tokens += request.chunk_tokens
            request.chunk_tokens = 0
        self.step = []
        self.queued_tokens -= self._step_tokens
        done: list[R] = []
        prompt_tokens = 0
        recorder = self.recorder
        while queue and queue[0].prefilled_tokens >= queue[0].prompt_tokens:
            request = queue.popleft()
            request.engine_first_token_s = now_s
            request.last_token_s = now_s
            prompt_tokens += request.prompt_tokens
            done.append(request)
            if recorder is not None:
                recorder.first_token(now_s - request.engine_arrival_s)
                recorder.request_finished(prompt_tokens=request.prompt_tokens, generated_tokens=1,
                                          queue_s=request.scheduled_s - request.engine_arrival_s,
                                          prefill_s=now_s - request.scheduled_s)
        partial = queue[0].prefilled_tokens if queue and queue[0].prefilled_tokens else 0
        self._held_tokens = partial + prompt_tokens
        if recorder is not None:
            running = 1 if partial else 0
            recorder.step_ended(scheduled_tokens=self._step_tokens, prompt_tokens=prompt_tokens,
                                generated_tokens=len(done), itl_tokens=0, step_s=step_s, running=running,
                                waiting=len(queue) - running, kv_tokens=self._held_tokens, decode=False)
        self._step_tokens = 0
        self._step_squared = 0
        return done
