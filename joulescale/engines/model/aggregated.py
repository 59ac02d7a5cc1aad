"""An aggregated (colocated) instance: vLLM V1's one scheduler for prefill chunks and decodes.

Each step has one token budget (``--max-num-batched-tokens``, ``joulescale.batching``). As vLLM
V1's scheduler does, the running requests come first: every running decode gets its one token,
then the prompts already in prefill get their next chunk, in admission order; then, when the
step preempted nobody, waiting requests are admitted in FIFO order and get a chunk of what the
budget has left (chunked prefill: a prompt longer than that is split and its next chunk comes
first among the prompts of the next step). The step that computes a prompt's last chunk samples
its first token; from the next step on the request decodes, one token per step.

Admission and preemption are ``kv_rules``', the ones a P/D decode instance uses. ``max_running``
counts prompts in prefill and decodes. A prompt's whole context is reserved in the cache when it
is admitted (vLLM allocates block by block as chunks run; reserving at once keeps admission on
the safe side, so a prompt in prefill never overflows the cache). When the next step's decode
tokens would not fit, the newest requests are preempted: prompts in prefill first (admitted
last), then the newest decodes. A preempted request loses its cache; when readmitted, its whole
context (prompt and the tokens it generated) is prefilled again in chunks, and the last chunk
samples its next token.

Step latency and power: ``physics.mixed_step_times_s`` (a decode step plus the chunks' marginal
prefill cost, plus the step overhead) and ``physics.step_power_watts`` (each part at its power).

The decode batch is a ``DecodeModel`` (its O(1) aggregate and finish heap), driven through
``join`` and ``preempt_to_fit``; this model reports to the recorder itself, as the page of one
vLLM instance. The driving protocol is the package's (``joulescale.engines.model``).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from joulescale.engines.model.decode import DecodeModel
from joulescale.engines.model.prefill import chunk_squared_tokens
from joulescale.engines.model.request import EngineRequest
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile

R = TypeVar("R", bound=EngineRequest)
"""The caller's request type (a subclass may carry the caller's own fields)."""


def context_tokens(request: EngineRequest) -> int:
    """The cache a request holds once it has its latest token: prompt, first token, decodes."""
    return request.prompt_tokens + 1 + request.decode_done_tokens


def prefill_target_tokens(request: EngineRequest) -> int:
    """Tokens its next prefill computes: the prompt, or after a preemption its whole context."""
    if request.engine_first_token_s < 0.0:
        return request.prompt_tokens
    return context_tokens(request)


class AggregatedModel(Generic[R]):
    """The scheduler of one aggregated instance; the caller drives time (``joulescale.engines.model``)."""

    __slots__ = ("_step_batch", "_step_context", "_step_squared", "_step_tokens", "busy", "decode", "prefilled",
                 "prefilling", "profile", "queued_tokens", "recorder", "reserved_tokens", "rules", "step",
                 "step_log", "token_budget", "waiting")

    def __init__(self, profile: GpuProfile, token_budget: int, kv_capacity_tokens: int, max_running: int,
                 watermark: float, recorder: MetricsRecorder | None = None) -> None:
        if token_budget < max_running:
            # vLLM refuses it too: every running decode must fit in one step's budget.
            raise ValueError("token_budget must be at least max_running")
        self.decode: DecodeModel[R] = DecodeModel(profile, kv_capacity_tokens, max_running, watermark)
        self.rules = self.decode.rules
        self.profile = profile
        self.token_budget = token_budget
        self.recorder = recorder
        self.waiting: deque[R] = deque()
        """Requests not admitted (new, or preempted at the front), in the order they are admitted."""
        self.prefilling: dict[int, R] = {}
        """Admitted prompts whose prefill is not done, in admission order (the newest last)."""
        self.reserved_tokens = 0
        """Cache reserved for the prompts in ``prefilling`` (their whole context)."""
        self.queued_tokens = 0
        """Tokens still to prefill (waiting and in prefill): the load a prefill-aware router sees."""
        self.step: list[R] = []
        """Prompts with a chunk in the running step."""
        self.prefilled: list[R] = []
        """Prompts whose prefill the last step completed (a first token, or the next after a preemption)."""
        self.step_log: list[tuple[int, int, int, int, int]] = []
        """(decodes, their context, chunk tokens, chunk S2, prompts chunked) of every step run."""
        self.busy = False
        self._step_batch = 0
        self._step_context = 0
        self._step_tokens = 0
        self._step_squared = 0

    @property
    def running(self) -> int:
        """Sequences the scheduler runs: decodes and prompts in prefill (vLLM's running gauge)."""
        return len(self.decode.running) + len(self.prefilling)

    @property
    def kv_tokens(self) -> int:
        """Cache in use: the decodes' contexts and the prompts' prefilled chunks."""
        return self.decode.context_tokens + sum(r.prefilled_tokens for r in self.prefilling.values())

    @property
    def kv_cache_usage(self) -> float:
        return min(1.0, self.kv_tokens / self.rules.kv_capacity_tokens)

    @property
    def step_batch(self) -> int:
        """Decodes in the running step."""
        return self._step_batch

    @property
    def step_tokens(self) -> int:
        """Prefill chunk tokens in the running step."""
        return self._step_tokens

    def enqueue(self, request: R, now_s: float) -> None:
        request.arrive(now_s)
        self.waiting.append(request)
        self.queued_tokens += request.prompt_tokens

    def _preempt(self, now_s: float) -> int:
        """Preempt the newest requests until the next step's decode tokens fit; returns how many."""
        decode = self.decode
        batch = len(decode.running)
        in_use = decode.context_tokens + self.reserved_tokens
        count = 0
        while self.prefilling and self.rules.overflows(in_use, batch, batch + len(self.prefilling)):
            _, victim = self.prefilling.popitem()
            reserved = context_tokens(victim)
            self.reserved_tokens -= reserved
            in_use -= reserved
            self.queued_tokens += victim.prefilled_tokens
            victim.prefilled_tokens = 0
            victim.epoch += 1
            victim.preemptions += 1
            self.waiting.appendleft(victim)
            count += 1
        if batch > 1:
            decode.preempt_to_fit(now_s, self.reserved_tokens)
            if decode.waiting:
                count += len(decode.waiting)
                for victim in decode.waiting:
                    self.queued_tokens += context_tokens(victim)
                self.waiting.extendleft(reversed(decode.waiting))
                decode.waiting.clear()
        if count and self.recorder is not None:
            self.recorder.preempted(count)
        return count

    def _chunk(self, request: R, left: int) -> int:
        chunk = min(prefill_target_tokens(request) - request.prefilled_tokens, left)
        request.chunk_tokens = chunk
        self._step_squared += chunk_squared_tokens(request.prefilled_tokens, chunk)
        self.step.append(request)
        return chunk

    def start_step(self, now_s: float) -> bool:
        """Preempt, then schedule decodes, running prompts' chunks and new admissions (call when
        not busy); False when there is nothing to run."""
        decode = self.decode
        preempted = self._preempt(now_s) if self.prefilling or len(decode.running) > 1 else 0
        batch = len(decode.running)
        budget = self.token_budget - batch
        self._step_squared = 0
        tokens = 0
        for request in self.prefilling.values():
            if tokens >= budget:
                break
            tokens += self._chunk(request, budget - tokens)
        waiting = self.waiting
        if waiting and not preempted and tokens < budget:
            rules = self.rules
            in_use = decode.context_tokens + self.reserved_tokens
            running = batch + len(self.prefilling)
            recorder = self.recorder
            while waiting and tokens < budget:
                head = waiting[0]
                context = context_tokens(head)
                if not rules.admits(in_use, running, context):
                    break
                waiting.popleft()
                self.prefilling[head.request_id] = head
                self.reserved_tokens += context
                in_use += context
                running += 1
                if head.scheduled_s < 0.0:
                    head.scheduled_s = now_s
                    if recorder is not None:
                        recorder.request_scheduled(now_s - head.engine_arrival_s)
                tokens += self._chunk(head, budget - tokens)
        if not batch and not tokens:
            return False
        self._step_batch = batch
        self._step_context = decode.context_tokens
        self._step_tokens = tokens
        if batch:
            decode.begin_step()
        self.step_log.append((batch, self._step_context, tokens, self._step_squared, len(self.step)))
        if tokens and self.recorder is not None:
            self.recorder.batch_formed(batch, len(waiting), self.kv_tokens)
        self.busy = True
        return True

    def step_latency_s(self, sm_clock_mhz: float) -> float:
        """The running step's duration at a clock (decode step + the chunks' marginal prefill + overhead)."""
        decode_s, prefill_s, overhead_s = physics.mixed_step_times_s(
            self.profile, self._step_batch, self._step_context, self._step_tokens, self._step_squared, sm_clock_mhz,
            len(self.step))
        return decode_s + prefill_s + overhead_s

    def step_power_watts(self, sm_clock_mhz: float) -> float:
        """One GPU's power over the running step at a clock (each part at its power)."""
        prompts = len(self.step)
        decode_s, prefill_s, overhead_s = physics.mixed_step_times_s(
            self.profile, self._step_batch, self._step_context, self._step_tokens, self._step_squared, sm_clock_mhz,
            prompts)
        return physics.step_power_watts(self.profile, decode_s, prefill_s, overhead_s, sm_clock_mhz,
                                        self._step_batch, prompts)

    def finish_step(self, now_s: float, step_s: float) -> list[R]:
        """End the running step at ``now_s`` after ``step_s``; returns the requests it finished
        (``prefilled`` holds the prompts whose prefill it completed)."""
        self.busy = False
        decode = self.decode
        recorder = self.recorder
        batch = self._step_batch
        done = decode.finish_step(now_s, step_s) if batch else []
        prefilled = self.prefilled
        prefilled.clear()
        first_prompts = 0
        self.queued_tokens -= self._step_tokens
        for request in self.step:
            target = prefill_target_tokens(request)
            request.prefilled_tokens += request.chunk_tokens
            request.chunk_tokens = 0
            if request.prefilled_tokens < target:
                continue
            del self.prefilling[request.request_id]
            self.reserved_tokens -= context_tokens(request)
            request.prefilled_tokens = 0
            prefilled.append(request)
            if request.engine_first_token_s < 0.0:
                request.engine_first_token_s = now_s
                first_prompts += request.prompt_tokens
                if recorder is not None:
                    recorder.first_token(now_s - request.engine_arrival_s)
            else:
                request.decode_done_tokens += 1
                if recorder is not None:
                    recorder.token_after_gap(now_s - request.last_token_s)
            request.last_token_s = now_s
            if request.decode_done_tokens >= request.decode_tokens:
                done.append(request)
            else:
                decode.join(request)
        self.step = []
        if recorder is not None:
            for request in done:
                recorder.request_finished(prompt_tokens=request.prompt_tokens, generated_tokens=request.output_tokens,
                                          queue_s=request.scheduled_s - request.engine_arrival_s,
                                          prefill_s=request.engine_first_token_s - request.scheduled_s)
            recorder.step_ended(scheduled_tokens=batch + self._step_tokens, prompt_tokens=first_prompts,
                                generated_tokens=batch + len(prefilled), itl_tokens=batch, step_s=step_s,
                                running=self.running, waiting=len(self.waiting), kv_tokens=self.kv_tokens,
                                decode=batch > 0)
        self._step_batch = 0
        self._step_tokens = 0
        self._step_squared = 0
        return done

    def generated_tokens(self, request: EngineRequest) -> int:
        """Decode tokens (after the first) a decoding request has produced so far, as ``DecodeModel``."""
        return self.decode.generated_tokens(request)
