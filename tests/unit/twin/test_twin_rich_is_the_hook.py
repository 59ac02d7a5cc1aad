"""The twin's rich view is exactly what the engine hook publishes, and no more.

Every message the twin's instances publish goes through the hook's wire format (the simulated
engine's encoder, the hook's own ``encode``, the agent's checked decoder) into a fresh
``ObservationBuilder``; at each of the twin's decisions that builder, given only what the agent
has besides the hook (the instant, the clock it locked, the KV capacity from the page), must
rebuild the observation the twin's policy saw. A rich observation that holds anything the
messages cannot carry (a simulator field, a clock in force the hook does not publish, a
preemption count) fails here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import astuple
from typing import Any

import pytest

from e2e.simengine.hook import to_wire
from joulescale.engines.hook import MAX_ENTRIES, HookSchedule, HookStepDone
from joulescale.engines.hook_publish import prefill_schedule
from joulescale.engines.model import EngineRequest, PrefillModel
from joulescale.engines.observation import Observation
from joulescale.engines.observe import ObservationBuilder
from joulescale.twin.cluster import InstanceControl
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import load_trace, scaled_window
from joulescale_agent.engines.hook_wire import read_datagram
from joulescale_hook.schema import encode

from .helpers import PassThrough, profile, small_cluster

Event = tuple[str, Any]


def _through_the_wire(message: HookSchedule | HookStepDone) -> HookSchedule | HookStepDone:
    return read_datagram(encode(to_wire(message)))[1]


def _same(a: object, b: object) -> bool:
    """Equal, floats within the wire's nanosecond resolution."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-6)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "__dataclass_fields__") and type(a) is type(b):
        return _same(astuple(a), astuple(b))  # type: ignore[arg-type]
    return a == b


class _Alternating:
    """Asks for two clocks in turn so the locked clock the observation carries changes."""

    name = "alternating"

    def __init__(self) -> None:
        self.seen: list[Observation] = []

    def decide(self, observation: Observation) -> Any:
        from joulescale.control.policy import ClockDecision, DecisionReason

        self.seen.append(observation)
        return ClockDecision((1980, 1410)[len(self.seen) % 2], DecisionReason.SLO_FIT)


def test_every_rich_observation_of_the_twin_is_rebuilt_from_the_hooks_datagrams(monkeypatch: pytest.MonkeyPatch) -> None:
    events: dict[int, list[Event]] = defaultdict(list)
    phases: dict[int, str] = {}
    schedule, step_done, build_rich = (ObservationBuilder.hook_schedule, ObservationBuilder.hook_step_done,
                                       ObservationBuilder.build_rich)

    def record_schedule(self: ObservationBuilder, message: HookSchedule) -> None:
        events[id(self)].append(("message", message))
        phases[id(self)] = self.phase
        schedule(self, message)

    def record_done(self: ObservationBuilder, message: HookStepDone) -> None:
        events[id(self)].append(("message", message))
        step_done(self, message)

    def record_build(self: ObservationBuilder, now_s: float, sm_clock_mhz: int, kv_capacity_tokens: int | None,
                     published_s: float | None = None) -> Observation:
        observation = build_rich(self, now_s, sm_clock_mhz, kv_capacity_tokens, published_s)
        events[id(self)].append(("build", ((now_s, sm_clock_mhz, kv_capacity_tokens, published_s), observation)))
        phases[id(self)] = self.phase
        return observation

    monkeypatch.setattr(ObservationBuilder, "hook_schedule", record_schedule)
    monkeypatch.setattr(ObservationBuilder, "hook_step_done", record_done)
    monkeypatch.setattr(ObservationBuilder, "build_rich", record_build)
    policies: list[_Alternating] = []

    def control(phase: str, index: int) -> InstanceControl:
        policy = _Alternating()
        policies.append(policy)
        return InstanceControl(policy, PassThrough())  # type: ignore[arg-type]

    window = scaled_window(load_trace("azure-conv"), 3.0, 20.0)
    result = simulate(window, small_cluster(2, 1, view="rich"), control)
    monkeypatch.undo()

    seen = [o for p in policies for o in p.seen]
    built = [e[1][1] for evs in events.values() for e in evs if e[0] == "build"]
    assert len(seen) == len(built) > 100
    assert all(any(o is b for b in built) for o in seen)  # the policy saw what the builder built, nothing else
    kv_capacity = profile().kv_capacity_tokens
    checked = {"prefill": 0, "decode": 0}
    for key, evs in events.items():
        fresh = ObservationBuilder(phases[key])  # type: ignore[arg-type]
        received_s: float | None = None
        for kind, payload in evs:
            if kind == "message":
                message = _through_the_wire(payload)
                if isinstance(message, HookSchedule):
                    fresh.hook_schedule(message)
                    received_s = payload.at_s
                else:
                    fresh.hook_step_done(message)
                continue
            (now_s, clock_mhz, capacity, published_s), observation = payload
            assert capacity == kv_capacity  # what the agent reads on the page, not a simulator field
            assert published_s == received_s  # when the latest schedule reached the agent
            rebuilt = fresh.build_rich(now_s, clock_mhz, capacity, published_s)
            assert _same(rebuilt, observation), (observation, rebuilt)
            checked[phases[key]] += 1
    assert checked["prefill"] > 50
    assert checked["decode"] > 50
    # The clock in an observation is the one the agent locked, never one the GPU reports.
    assert {o.sm_clock_mhz for o in seen} <= {1980, 1410}
    assert any(o.queue for o in seen if o.phase == "prefill")
    assert any(o.decoding for o in seen if o.phase == "decode")
    assert all(o.preemptions_delta == 0 for o in seen)  # the hook publishes no preemption count
    assert result.requests


def test_a_queue_longer_than_a_message_is_cut_as_the_wire_cuts_it() -> None:
    """Totals stay exact; the twin's entries stop where the hook's do."""
    model: PrefillModel[EngineRequest] = PrefillModel(profile(), 8192)
    for i in range(MAX_ENTRIES + 300):
        model.enqueue(EngineRequest(i, 0.001 * i, 100, 2), 0.001 * i)
    assert model.start_step(2.0)
    message = prefill_schedule(model, 1, 2.0)
    assert message.waiting_requests == MAX_ENTRIES + 300 - len(model.step)
    assert len(message.waiting) == MAX_ENTRIES
    assert _same(_through_the_wire(message), message)
