"""The vLLM scheduler hook against the pinned vLLM 0.33.0 contract: its overrides bind as vLLM
calls them, it reads only pinned names, and over a stand-in base it publishes what the step does."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from joulescale_hook import runtime, vllm_hook
from joulescale_hook.schema import StepDone, StepScheduled
from joulescale_hook.transport import HookReceiver
from joulescale_hook.vllm_hook import HookedSchedulerMixin, build_scheduled
from tests.hook.hook_standins import (
    NewRequestData,
    StandInAsyncScheduler,
    VllmRequest,
    VllmSchedulerOutput,
    assert_overrides_bind,
    engine_attributes_read,
)
from tests.hook.pinned_signatures import VLLM, attribute_names, find

STANDIN = "tests.hook.hook_standins.StandInAsyncScheduler"


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HookReceiver]:
    path = str(tmp_path / "pod.sock")
    monkeypatch.setenv("JOULESCALE_HOOK_SOCKET", path)
    runtime.reset()
    r = HookReceiver(path)
    yield r
    r.close()
    runtime.reset()


@pytest.fixture
def scheduler_cls(monkeypatch: pytest.MonkeyPatch) -> type:
    monkeypatch.setenv("JOULESCALE_HOOK_BASE_SCHEDULER", STANDIN)
    from joulescale_hook import vllm_scheduler

    return importlib.reload(vllm_scheduler).JouleScaleScheduler  # type: ignore[no-any-return]


def messages(receiver: HookReceiver, n: int) -> list[StepScheduled | StepDone]:
    got = []
    for _ in range(n):
        m = receiver.receive_wait(2.0)
        assert m is not None, f"only {len(got)} of {n} messages arrived"
        got.append(m)
    return got


def test_the_overrides_bind_as_vllm_calls_the_pinned_methods() -> None:
    for method in ("schedule", "update_from_output"):
        assert_overrides_bind(HookedSchedulerMixin, method, find(VLLM, f"Scheduler.{method}").params or ())
    overridden = {n for n in vars(HookedSchedulerMixin) if not n.startswith("_")} - {"requests", "waiting"}
    assert overridden == {"schedule", "update_from_output"}


def test_the_hook_reads_only_pinned_names_of_vllm_objects() -> None:
    read = engine_attributes_read(vllm_hook, {"self", "output", "scheduler_output"},
                                  within="HookedSchedulerMixin")
    read |= engine_attributes_read(vllm_hook, {"req", "output", "new", "cached", "requests", "tokens"},
                                   within="build_scheduled")
    assert {"scheduled_cached_reqs", "num_output_tokens", "arrival_time"} <= read  # the walk sees them
    ours = {"__dict__", "_joulescale_scheduled", "_joulescale_done", "get"}
    assert read - ours <= attribute_names(VLLM), read - ours - attribute_names(VLLM)


def test_the_class_vllm_loads_derives_from_the_named_base(scheduler_cls: type) -> None:
    assert scheduler_cls.__mro__[1:3] == (HookedSchedulerMixin, StandInAsyncScheduler)
    assert scheduler_cls.__module__ == "joulescale_hook.vllm_scheduler"


def test_a_chunked_prefill_then_decode_with_a_waiting_queue(scheduler_cls: type,
                                                           receiver: HookReceiver) -> None:
    sched = scheduler_cls()
    arrived = time.time() - 0.5
    sched.requests = {"a": VllmRequest(3000, arrived), "b": VllmRequest(100, arrived)}
    b = sched.requests["b"]  # decoding: its 100-token prompt is computed, its first token sampled
    b.num_computed_tokens, b._outputs = 100, 1
    sched.scheduled_before.add("b")
    queued = VllmRequest(700, arrived + 0.25)
    sched.waiting.append(queued)

    sched.plan = {"a": 2048, "b": 1}  # the first chunk of a's prompt, mixed with b's decode
    out1 = sched.schedule()
    sched.plan = {"a": 952, "b": 1}  # async: step 2 is scheduled before step 1's output
    out2 = sched.schedule()
    sched.update_from_output(out1, None)
    time.sleep(0.02)
    sched.update_from_output(out2, None)
    first, second, done1, done2 = messages(receiver, 4)

    assert isinstance(first, StepScheduled)
    assert (first.step_id, first.prefill_requests, first.prefill_tokens) == (0, 1, 2048)
    assert (tuple(first.prefill_prompt_tokens), tuple(first.prefill_done_tokens),
            tuple(first.prefill_step_tokens)) == ((3000,), (0,), (2048,))
    assert (first.decode_requests, first.decode_kv_tokens, tuple(first.decode_kv)) == (1, 101, (101,))
    assert (first.waiting_requests, tuple(first.waiting_prompt_tokens)) == (1, (700,))
    # arrival times arrive on the monotonic clock: a's 0.5 s ago, the queued one 0.25 s later
    assert first.t_ns - first.prefill_arrival_ns[0] == pytest.approx(0.5e9, abs=0.05e9)
    assert first.waiting_arrival_ns[0] - first.prefill_arrival_ns[0] == pytest.approx(0.25e9, abs=1e6)

    assert isinstance(second, StepScheduled)
    assert (tuple(second.prefill_done_tokens), tuple(second.prefill_step_tokens)) == ((2048,), (952,))
    # b's output tokens: 1 in step 1, 2 in step 2 (the second in flight under async scheduling)
    assert (tuple(first.decode_output_tokens), tuple(second.decode_output_tokens)) == ((1,), (2,))
    assert tuple(second.decode_kv) == (102,)

    assert isinstance(done1, StepDone)
    assert isinstance(done2, StepDone)
    assert (done1.step_id, done2.step_id) == (0, 1)
    # step 2 could start only when step 1 ended: its duration runs from there
    assert done2.duration_ns == pytest.approx(done2.t_ns - done1.t_ns, abs=1)
    assert done2.duration_ns >= 0.02e9
    assert sched.calls == ["schedule", "schedule", "update_from_output", "update_from_output"]
    assert runtime.failures() == 0


def test_an_idle_poll_publishes_nothing(scheduler_cls: type, receiver: HookReceiver) -> None:
    sched = scheduler_cls()
    sched.update_from_output(sched.schedule(), None)
    assert receiver.receive_wait(0.2) is None
    assert runtime.failures() == 0


def test_a_broken_hook_never_reaches_vllm(scheduler_cls: type, receiver: HookReceiver) -> None:
    sched = scheduler_cls()
    sched.requests = {"a": VllmRequest(10, time.time())}
    sched.plan = {"a": 10}
    sched.waiting = None  # no len(): the hook fails inside, vLLM's result still comes back
    out = sched.schedule()
    assert out.num_scheduled_tokens == {"a": 10}
    assert sched.update_from_output(out, "runner") == {0: "runner"}
    assert runtime.failures() == 1


def test_vllms_own_errors_pass_through_unchanged(scheduler_cls: type, receiver: HookReceiver) -> None:
    sched = scheduler_cls()
    sched.plan = {"missing": 1}
    with pytest.raises(KeyError, match="missing"):
        sched.schedule()


def test_without_a_socket_configured_the_hook_is_inert(scheduler_cls: type,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JOULESCALE_HOOK_SOCKET", "JOULESCALE_POD_UID"):
        monkeypatch.delenv(name, raising=False)
    runtime.reset()
    sched = scheduler_cls()
    sched.requests = {"a": VllmRequest(10, time.time())}
    sched.plan = {"a": 10}
    sched.update_from_output(sched.schedule(), None)
    assert runtime.process_publisher() is None
    assert runtime.failures() == 0


def test_a_request_gone_before_the_message_is_built_is_still_classified() -> None:
    """The sender thread reads prompt lengths and arrivals from the live ``requests``; a request
    that finished meanwhile is classified by its output tokens and stamped with the step's time."""
    out = VllmSchedulerOutput({"gone-decoding": 1, "gone-prefilling": 512, "no-ids": 100})
    out.scheduled_new_reqs.append(NewRequestData("no-ids", None, 0))  # prompt embeddings: no ids
    cached = out.scheduled_cached_reqs
    cached.req_ids += ["gone-decoding", "gone-prefilling"]
    cached.num_computed_tokens += [900, 1024]
    cached.num_output_tokens += [40, 0]
    requests = {"no-ids": VllmRequest(300, time.time())}
    message = build_scheduled(5, 10**12, 0, out, requests, [], 0)
    assert (tuple(message.decode_kv), tuple(message.decode_output_tokens)) == ((901,), (40,))
    assert tuple(message.prefill_prompt_tokens) == (300, 1536)  # looked up; done + this chunk
    assert tuple(message.prefill_step_tokens) == (100, 512)
    assert message.prefill_arrival_ns[1] == 10**12
