"""What the engine hook publishes, neutral to its wire format, and its tallies between observations.

The hook (the ``engine_hook`` distribution, installed in engine images) publishes two messages:
one per scheduling call, before the step runs (``HookSchedule``), and one when the step's output
has been processed (``HookStepDone``). The agent decodes them from the wire into these types; the
twin makes the same types from its engine model at the same moments. Both hand them to the one
``ObservationBuilder`` (``observe.py``), which turns them into the rich view. Nothing else feeds
the rich view: a field a policy reads there is one these messages carry.

All times are on the publisher's clock; the builder measures ages against the message's own
``at_s``, so the reader's clock need not agree with the engine's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass

from joulescale.engines.observation import QueuedPrompt


@dataclass(frozen=True, slots=True)
class ScheduledPrefill:
    """A request with a prompt chunk in the scheduled step (chunked prefill included)."""

    prompt_tokens: int
    computed_tokens: int
    """Prompt tokens prefilled before this step."""
    scheduled_tokens: int
    """Prompt tokens of this step's chunk."""
    arrival_s: float

    @property
    def completes(self) -> bool:
        """True when this chunk ends the prompt (its first token comes with the step)."""
        return self.computed_tokens + self.scheduled_tokens >= self.prompt_tokens


@dataclass(frozen=True, slots=True)
class ScheduledDecode:
    """A running decode request of the scheduled step (the hook publishes no request id and no
    arrival time for it)."""

    kv_tokens: int
    """Tokens in its KV cache (prompt, first token and those generated here)."""
    output_tokens: int
    """Tokens this instance has generated for it so far (the first token excluded)."""


MAX_ENTRIES = 1024
"""Per-request entries one schedule message carries per list (the wire schema's limit: its
totals stay exact, the waiting list keeps the oldest)."""


@dataclass(frozen=True, slots=True)
class HookSchedule:
    """One scheduling call: the step about to run and the queue it left. The totals are exact;
    the entry lists hold at most ``MAX_ENTRIES`` each."""

    step_id: int
    at_s: float
    prefill: tuple[ScheduledPrefill, ...]
    decode: tuple[ScheduledDecode, ...]
    waiting: tuple[QueuedPrompt, ...]
    """The waiting queue in its order: prompt lengths and arrival times."""
    prefill_requests: int
    prefill_tokens: int
    """Prompt tokens the step computes, chunks included."""
    decode_requests: int
    decode_kv_tokens: int
    waiting_requests: int


@dataclass(frozen=True, slots=True)
class HookStepDone:
    """A step's output was processed: its measured duration."""

    step_id: int
    at_s: float
    duration_s: float


_PENDING_STEPS = 8
"""Scheduled steps kept until their end arrives (async scheduling has two in flight)."""
_STARTS_KEPT = 4096
"""Schedule instants kept to date a decode request's start (at 20 ms a step, 80 s)."""


class HookTally:
    """The hook's messages since the previous observation: the latest schedule, and the steps that
    ended with what they completed. Bounded whatever the publisher sends."""

    __slots__ = ("_pending", "_start_ids", "_start_s", "busy_s", "generation_tokens", "iterations", "last_done_step",
                 "last_iteration_s", "latest", "prompt_tokens")

    def __init__(self) -> None:
        self.latest: HookSchedule | None = None
        self._pending: OrderedDict[int, HookSchedule] = OrderedDict()
        self.last_done_step: int | None = None
        self.last_iteration_s: float | None = None
        self.iterations = 0
        self.busy_s = 0.0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self._start_ids: list[int] = []
        self._start_s: list[float] = []
        """Step ids of the latest schedules (ascending) and when each was published."""

    def schedule(self, message: HookSchedule) -> None:
        ids, times = self._start_ids, self._start_s
        if ids and message.step_id <= ids[-1]:
            ids.clear()  # step ids went back: the engine restarted
            times.clear()
        self.latest = message
        ids.append(message.step_id)
        times.append(message.at_s)
        if len(ids) > 2 * _STARTS_KEPT:
            del ids[:-_STARTS_KEPT]
            del times[:-_STARTS_KEPT]
        pending = self._pending
        pending[message.step_id] = message
        while len(pending) > _PENDING_STEPS:
            pending.popitem(last=False)

    def decode_started_s(self, output_tokens: int) -> float | None:
        """When a request of the latest schedule with ``output_tokens`` generated began to decode:
        a running request is in every step, so it was first scheduled that many steps before. A
        step whose message was dropped is placed between its known neighbours; one older than
        every step kept, back from the oldest at the mean step period. None before two steps."""
        ids, times = self._start_ids, self._start_s
        if not ids:
            return None
        target = ids[-1] - output_tokens
        i = bisect_left(ids, target)
        if i < len(ids) and ids[i] == target:
            return times[i]
        if 0 < i < len(ids):
            share = (target - ids[i - 1]) / (ids[i] - ids[i - 1])
            return times[i - 1] + share * (times[i] - times[i - 1])
        if len(ids) < 2:
            return None
        period_s = (times[-1] - times[0]) / (ids[-1] - ids[0])
        return times[0] - (ids[0] - target) * period_s

    def step_done(self, message: HookStepDone) -> None:
        """Book a step's end; a step never scheduled (or already booked) counts once, with no tokens."""
        step = self._pending.pop(message.step_id, None)
        self.last_done_step = message.step_id
        self.last_iteration_s = message.duration_s
        self.iterations += 1
        self.busy_s += message.duration_s
        if step is None:
            return
        for request in step.prefill:
            if request.completes:
                self.prompt_tokens += request.prompt_tokens
                self.generation_tokens += 1
        self.generation_tokens += step.decode_requests

    @property
    def in_flight(self) -> HookSchedule | None:
        """The step running: the latest schedule, or the one before it while that one has not
        ended (an engine that schedules ahead publishes step N+1 while step N runs: ``next_step``;
        no engine has more steps in flight). None when the engine went idle (it schedules again
        at once while it has work, so a finished latest step means none)."""
        latest = self.latest
        if latest is None or latest.step_id == self.last_done_step:
            return None
        before = self._pending.get(latest.step_id - 1)
        done = self.last_done_step
        return before if before is not None and (done is None or before.step_id > done) else latest

    @property
    def next_step(self) -> HookSchedule | None:
        """The step decided ahead of the running one (vLLM's async scheduling, SGLang's overlap
        scheduler), None when the latest schedule is the running step's."""
        running = self.in_flight
        latest = self.latest
        return latest if running is not None and latest is not None and latest is not running else None

    def take(self) -> tuple[int, int, int, float, float | None]:
        """(prompt tokens, generated tokens, steps, mean step seconds, last step seconds) since the
        previous take; counts restart from zero."""
        out = (self.prompt_tokens, self.generation_tokens, self.iterations,
               self.busy_s / self.iterations if self.iterations else -1.0, self.last_iteration_s)
        self.prompt_tokens = self.generation_tokens = self.iterations = 0
        self.busy_s = 0.0
        return out


IDLE_AFTER_S = 0.005
"""A step's end with no scheduling call after it for this long means the engine went idle: an
engine with work schedules its next step at once (vLLM's busy loop calls ``schedule()`` only
while it has requests), so the reader waits this little before it believes the silence."""
