"""The SGLang plugin against the pinned SGLang 0.5.23 contract: its entry point is installed, its
hooks have the HookRegistry's BEFORE/AFTER shapes, it reads only pinned names, and over stand-ins
it publishes each batch before launch and the step's duration once its result is processed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from enum import Enum
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from joulescale_hook import runtime, sglang_plugin
from joulescale_hook.schema import StepDone, StepScheduled
from joulescale_hook.transport import HookReceiver
from tests.hook.hook_standins import engine_attributes_read
from tests.hook.pinned_signatures import SGLANG, attribute_names, find


class HookType(Enum):
    BEFORE = "before"
    AFTER = "after"


class StandInRegistry:
    """sglang/srt/plugins/hook_registry.py's register and its BEFORE/AFTER wrappers (lines 355-390
    of the pinned file): BEFORE calls fn(*args, **kwargs) and then the original; AFTER calls the
    original and then fn(result, *args, **kwargs), keeping the result when fn returns None."""

    hooks: ClassVar[list[tuple[str, Callable[..., Any], HookType]]] = []

    @classmethod
    def register(cls, target: str, hook: Callable[..., Any], hook_type: HookType = HookType.AFTER) -> None:
        cls.hooks.append((target, hook, hook_type))

    @classmethod
    def apply_to(cls, scheduler_cls: type) -> None:
        for target, hook, hook_type in cls.hooks:
            name = target.rsplit(".", 1)[-1]
            original = getattr(scheduler_cls, name)

            def wrapper(*args: Any, _o: Any = original, _h: Any = hook, _t: Any = hook_type, **kwargs: Any) -> Any:
                if _t is HookType.BEFORE:
                    result = _h(*args, **kwargs)
                    if result is not None:
                        args, kwargs = result
                    return _o(*args, **kwargs)
                result = _o(*args, **kwargs)
                modified = _h(result, *args, **kwargs)
                return modified if modified is not None else result

            setattr(scheduler_cls, name, wrapper)


class Mode:
    def __init__(self, extend: bool, decode: bool) -> None:
        self._extend, self._decode = extend, decode

    def is_extend(self, include_draft_extend_v2: bool = False) -> bool:
        return self._extend

    def is_decode(self) -> bool:
        return self._decode


class TimeStats:
    __slots__ = ("scheduler_recv_time",)

    def __init__(self, t: float) -> None:
        self.scheduler_recv_time = t


class Req:
    __slots__ = ("origin_input_ids", "output_ids", "time_stats")

    def __init__(self, prompt: int, outputs: int, recv: float) -> None:
        self.origin_input_ids = [1] * prompt
        self.output_ids = [2] * outputs
        self.time_stats = TimeStats(recv)

    @property
    def seqlen(self) -> int:
        return len(self.origin_input_ids) + len(self.output_ids)


class Batch:
    __slots__ = ("extend_lens", "forward_mode", "prefix_lens", "reqs")

    def __init__(self, mode: Mode, reqs: list[Req], prefix: list[int] | None = None,
                 extend: list[int] | None = None) -> None:
        self.forward_mode, self.reqs, self.prefix_lens, self.extend_lens = mode, reqs, prefix, extend


class StandInScheduler:
    def __init__(self) -> None:
        self.waiting_queue: list[Req] = []
        self.log: list[str] = []

    def run_batch(self, batch: Batch, pp_proxy_tensors: Any = None) -> str:
        self.log.append("run")
        return "result"

    def process_batch_result(self, batch: Batch, result: Any) -> None:
        self.log.append(f"process {result}")


@pytest.fixture
def scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StandInScheduler, HookReceiver]]:
    registry_module = ModuleType("sglang.srt.plugins.hook_registry")
    registry_module.HookRegistry = StandInRegistry  # type: ignore[attr-defined]
    registry_module.HookType = HookType  # type: ignore[attr-defined]
    for name in ("sglang", "sglang.srt", "sglang.srt.plugins"):
        monkeypatch.setitem(sys.modules, name, ModuleType(name))
    monkeypatch.setitem(sys.modules, "sglang.srt.plugins.hook_registry", registry_module)
    StandInRegistry.hooks = []
    path = str(tmp_path / "pod.sock")
    monkeypatch.setenv("JOULESCALE_HOOK_SOCKET", path)
    runtime.reset()
    sglang_plugin.reset()
    receiver = HookReceiver(path)
    cls = type("Scheduler", (StandInScheduler,), {})
    sglang_plugin.register()
    StandInRegistry.apply_to(cls)
    yield cls(), receiver
    receiver.close()
    runtime.reset()


def test_the_entry_point_is_installed_under_sglangs_group() -> None:
    group = find(SGLANG, "GENERAL_PLUGINS_GROUP").note.strip('"')
    (ep,) = [ep for ep in entry_points(group=group) if ep.name == "joulescale_hook"]
    assert ep.load() is sglang_plugin.register


def test_the_hooks_target_the_pinned_methods_with_their_shapes(scheduler: Any) -> None:
    assert [(t, k) for t, _, k in StandInRegistry.hooks] == [
        ("sglang.srt.managers.scheduler.Scheduler.run_batch", HookType.BEFORE),
        ("sglang.srt.managers.scheduler.Scheduler.process_batch_result", HookType.AFTER),
    ]
    for target, _, _ in StandInRegistry.hooks:
        assert find(SGLANG, ".".join(target.rsplit(".", 2)[-2:])).file == "sglang/srt/managers/scheduler.py"


def test_the_plugin_reads_only_pinned_names_of_sglang_objects() -> None:
    read = engine_attributes_read(sglang_plugin, {"scheduler", "batch", "req", "mode"})
    assert read <= attribute_names(SGLANG), read - attribute_names(SGLANG)


def test_overlapped_steps_publish_batches_before_launch_and_durations_in_order(scheduler: Any) -> None:
    sched, receiver = scheduler
    recv = time.perf_counter() - 0.3
    long_prompt = Req(5000, 0, recv)
    decoding = Req(200, 40, recv)
    sched.waiting_queue = [Req(900, 0, recv + 0.1)]
    prefill = Batch(Mode(True, False), [long_prompt, decoding], prefix=[0, 239], extend=[4096, 1])
    decode = Batch(Mode(False, True), [decoding])
    idle = Batch(Mode(False, False), [])

    assert sched.run_batch(prefill) == "result"  # launch step 0
    sched.run_batch(decode)  # the overlap scheduler launches step 1 ...
    sched.process_batch_result(prefill, "r0")  # ... then processes step 0's result
    sched.run_batch(idle)
    time.sleep(0.02)
    sched.process_batch_result(decode, "r1")
    sched.process_batch_result(idle, "r2")
    first, second, done0, done1 = (receiver.receive_wait(2.0) for _ in range(4))
    assert receiver.receive_wait(0.1) is None  # the idle batch: no message either way

    assert isinstance(first, StepScheduled)
    assert (first.prefill_requests, first.prefill_tokens, tuple(first.prefill_step_tokens)) == (1, 4096, (4096,))
    assert (first.decode_requests, first.decode_kv_tokens, tuple(first.decode_output_tokens)) == (1, 240, (40,))
    assert (first.waiting_requests, tuple(first.waiting_prompt_tokens)) == (1, (900,))
    assert first.t_ns - first.prefill_arrival_ns[0] == pytest.approx(0.3e9, abs=0.05e9)
    assert isinstance(second, StepScheduled)
    assert (second.step_id, second.prefill_requests, second.decode_kv_tokens) == (1, 0, 240)
    assert isinstance(done0, StepDone)
    assert isinstance(done1, StepDone)
    assert (done0.step_id, done1.step_id) == (0, 1)
    assert done1.duration_ns >= 0.02e9
    assert sched.log == ["run", "run", "process r0", "run", "process r1", "process r2"]
    assert runtime.failures() == 0


def test_a_broken_hook_never_reaches_sglang(scheduler: Any) -> None:
    sched, _ = scheduler
    sched.waiting_queue = None  # the hook fails inside; SGLang's call goes on
    assert sched.run_batch(Batch(Mode(False, True), [Req(10, 1, 0.0)])) == "result"
    sched.process_batch_result(None, "r")
    assert runtime.failures() == 1


def test_register_without_sglang_fails_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sglang", None)  # import raises ImportError
    runtime.reset()
    sglang_plugin.register()
    assert runtime.failures() == 1
