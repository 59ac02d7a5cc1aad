"""A closed-loop aggregated instance for ``joulescale twin steady``: prefill chunks and decodes
share each step's token budget (vLLM V1's scheduler: running requests first, then chunks of
waiting prompts in arrival order).

Interim driver: a step costs the decode of its decoding sequences plus the prefill of its chunks
(the profile's two latency models added). It is replaced by the core's aggregated engine model.
"""

from __future__ import annotations

from collections import deque

from joulescale.engines.model.prefill import chunk_squared_tokens
from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile


class LengthMix:
    """(prompt, output) lengths in order, cycled; lengths that can never fit the KV cache are skipped."""

    def __init__(self, lengths: tuple[tuple[int, int], ...], kv_capacity_tokens: int) -> None:
        fitting = tuple((p, max(1, o)) for p, o in lengths if p + max(1, o) <= kv_capacity_tokens)
        if not fitting:
            raise ValueError("no request of the length mix fits the KV cache")
        self._lengths = fitting
        self._next = 0

    def draw(self) -> tuple[int, int]:
        lengths = self._lengths[self._next]
        self._next = (self._next + 1) % len(self._lengths)
        return lengths


class _Sequence:
    __slots__ = ("chunk", "generated", "output", "prefilled", "prompt")

    def __init__(self, prompt: int, output: int) -> None:
        self.prompt = prompt
        self.output = output
        self.prefilled = 0
        self.generated = 0
        self.chunk = 0


class ColocatedEngine:
    """``max_num_seqs`` sequences in flight; a finished one is replaced at once from the mix.

    KV: a sequence is admitted only while the cache holds every admitted sequence at its full
    length (prompt + output), so no preemption happens; with long mixes and a large
    ``max_num_seqs`` fewer sequences run than allowed, as in an engine whose cache is full."""

    def __init__(self, profile: GpuProfile, max_num_seqs: int, token_budget: int, mix: LengthMix) -> None:
        self.profile = profile
        self.max_num_seqs = max_num_seqs
        self.token_budget = token_budget
        self.mix = mix
        self.waiting: deque[_Sequence] = deque(_Sequence(*mix.draw()) for _ in range(max_num_seqs))
        self.running: list[_Sequence] = []
        self.reserved_tokens = 0
        self.output_tokens = 0
        self._decoding = 0
        self._context = 0
        self._chunk_tokens = 0
        self._chunk_squared = 0
        self._chunks = 0

    def _admit(self) -> None:
        capacity = self.profile.kv_capacity_tokens
        while self.waiting and len(self.running) < self.max_num_seqs:
            head = self.waiting[0]
            if self.running and self.reserved_tokens + head.prompt + head.output > capacity:
                break
            self.waiting.popleft()
            self.reserved_tokens += head.prompt + head.output
            self.running.append(head)

    def start_step(self) -> None:
        """Schedule the next step: every decoding sequence, then prompt chunks under the budget."""
        self._admit()
        left = self.token_budget
        decoding = context = 0
        for seq in self.running:
            if seq.prefilled >= seq.prompt:
                decoding += 1
                context += seq.prompt + seq.generated
        left -= decoding
        tokens = squared = chunks = 0
        for seq in self.running:
            seq.chunk = 0
            if seq.prefilled < seq.prompt and left > 0:
                seq.chunk = min(seq.prompt - seq.prefilled, left)
                left -= seq.chunk
                tokens += seq.chunk
                squared += chunk_squared_tokens(seq.prefilled, seq.chunk)
                chunks += 1
        self._decoding, self._context = decoding, context
        self._chunk_tokens, self._chunk_squared, self._chunks = tokens, squared, chunks

    @property
    def step_sequences(self) -> int:
        return self._decoding + self._chunks

    def step_latency_s(self, sm_clock_mhz: float) -> float:
        batch = self.step_sequences
        step_s = physics.decode_latency_s(self.profile, self._decoding, self._context, sm_clock_mhz)
        if self._chunk_tokens:
            step_s += physics.prefill_latency_from_sums_s(self.profile, self._chunk_tokens, self._chunk_squared,
                                                          sm_clock_mhz, batch, "decode")
        return step_s

    def finish_step(self) -> int:
        """Book the step's tokens; returns how many sequences completed (and were replaced)."""
        done = 0
        kept = []
        for seq in self.running:
            if seq.chunk:
                seq.prefilled += seq.chunk
                seq.chunk = 0
                if seq.prefilled >= seq.prompt:
                    seq.generated += 1  # the first token comes with the last chunk
                    self.output_tokens += 1
            elif seq.prefilled >= seq.prompt:
                seq.generated += 1
                self.output_tokens += 1
            if seq.generated >= seq.output:
                done += 1
                self.reserved_tokens -= seq.prompt + seq.output
                self.waiting.append(_Sequence(*self.mix.draw()))
            else:
                kept.append(seq)
        self.running = kept
        return done
