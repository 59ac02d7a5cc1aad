"""The engine hook's lead time in the twin: vLLM decides step N+1 while step N runs.

Its hook therefore publishes step N+1's StepScheduled at step N's start, and that message (the
step it describes included) holds only the requests that had arrived by then; one arriving later
waits for step N+2 even where N+1 had room. The step's duration comes only with its StepDone.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from joulescale.engines.hook import HookSchedule, HookStepDone
from joulescale.engines.observe import ObservationBuilder
from joulescale.twin.cluster import InstanceControl
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import TraceRequest

from .helpers import FixedClock, PassThrough, small_cluster


def _busy_trace() -> list[TraceRequest]:
    """Prompts close enough together that one prefill instance always has a step decided ahead,
    long enough that chunks continue across steps."""
    return [TraceRequest(0.013 * i, 2500 + (i * 1777) % 9000, 4) for i in range(240)]


def _run_recording(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[int, list[Any]], list[Any]]:
    messages: dict[int, list[Any]] = defaultdict(list)
    phases: dict[int, str] = {}
    schedule, step_done = ObservationBuilder.hook_schedule, ObservationBuilder.hook_step_done

    def record_schedule(self: ObservationBuilder, message: HookSchedule) -> None:
        messages[id(self)].append(message)
        phases[id(self)] = self.phase
        schedule(self, message)

    def record_done(self: ObservationBuilder, message: HookStepDone) -> None:
        messages[id(self)].append(message)
        step_done(self, message)

    monkeypatch.setattr(ObservationBuilder, "hook_schedule", record_schedule)
    monkeypatch.setattr(ObservationBuilder, "hook_step_done", record_done)

    def control(phase: str, index: int) -> InstanceControl:
        return InstanceControl(FixedClock(1410), PassThrough())  # type: ignore[arg-type]

    result = simulate(_busy_trace(), small_cluster(1, 1, view="rich", engine="vllm"), control)
    monkeypatch.undo()
    prefill = [key for key, phase in phases.items() if phase == "prefill"]
    assert len(prefill) == 1
    return messages, list(result.prefill[0].batch_log)


def test_vllms_next_step_is_published_at_the_running_steps_start_with_only_what_had_arrived(
        monkeypatch: pytest.MonkeyPatch) -> None:
    messages, batch_log = _run_recording(monkeypatch)
    prefill = next(m for m in messages.values() if any(isinstance(x, HookSchedule) and x.prefill for x in m))
    scheduled = {m.step_id: m for m in prefill if isinstance(m, HookSchedule)}
    ended = {m.step_id: m for m in prefill if isinstance(m, HookStepDone)}
    started_s = {step: done.at_s - done.duration_s for step, done in ended.items()}
    arrivals = sorted(r.arrival_s for r in _busy_trace())
    ahead = later_arrivals = continued = 0
    for step, message in scheduled.items():
        # The message describes the step that ran, whenever it was published.
        assert message.prefill_tokens == batch_log[step - 1][0]
        assert message.prefill_requests == batch_log[step - 1][2]
        known = [r.arrival_s for r in message.prefill] + [w.arrival_s for w in message.waiting]
        assert all(a <= message.at_s + 1e-12 for a in known)
        assert message.waiting_requests == len(message.waiting)
        if message.at_s < started_s[step] - 1e-12:
            ahead += 1
            # Published at the previous step's start, which the message knows nothing after.
            assert message.at_s == pytest.approx(started_s[step - 1], abs=1e-12)
            assert step - 1 not in ended or ended[step - 1].at_s > message.at_s
            missed = [a for a in arrivals if message.at_s < a <= started_s[step]]
            later_arrivals += len(missed)
            assert not set(missed) & set(known)
            continued += any(r.computed_tokens > 0 for r in message.prefill)
    assert ahead > 100
    assert later_arrivals > 20  # prompts that arrived while step N+1 was already decided
    assert continued > 10  # chunks decided ahead continue the running step's prompts


def test_the_policy_sees_the_running_step_and_the_one_decided_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """At step N's start the rich view runs step N's prompts and queues step N+1's new ones ahead
    of the waiting queue, all from messages published by then."""
    seen: list[Any] = []
    build_rich = ObservationBuilder.build_rich

    def record(self: ObservationBuilder, *args: Any, **kwargs: Any) -> Any:
        observation = build_rich(self, *args, **kwargs)
        if self.phase == "prefill":
            seen.append((self._hook.in_flight, self._hook.next_step, observation))
        return observation

    monkeypatch.setattr(ObservationBuilder, "build_rich", record)
    _run_recording(monkeypatch)
    both = [(r, n, o) for r, n, o in seen if r is not None and n is not None]
    assert len(both) > 100
    for running, ahead, observation in both:
        assert observation.running_requests == running.prefill_requests
        assert observation.context_tokens == running.prefill_tokens
        assert observation.queue is not None
        fresh = [r for r in ahead.prefill if r.computed_tokens == 0]
        assert len(observation.queue) == len(running.prefill) + len(fresh) + len(ahead.waiting)
        assert observation.waiting_requests == len(fresh) + ahead.waiting_requests

