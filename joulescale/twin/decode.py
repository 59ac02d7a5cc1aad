"""A decode instance of the twin: the core engine model, its simulated GPUs and its /metrics page.

Admission, preemption and the O(1) batch aggregate are ``joulescale.engines.model``'s; this adds
what only the cluster knows (requests still in KV transfer, for the router) and the engine hook's
messages (rich view).
"""

from __future__ import annotations

from joulescale.engines.dialects import VLLM, EngineDialect
from joulescale.engines.hook_publish import HookSink, StepHook
from joulescale.engines.model import DecodeModel
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import physics
from joulescale.twin.counters import EngineCounters
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.request import SimRequest


class DecodeInstance:
    __slots__ = ("_hook", "counters", "end_seq", "gpu", "incoming", "index", "model", "recorder")

    def __init__(self, index: int, gpu: SimGpuGroup, kv_capacity_tokens: int, max_running: int,
                 watermark: float, dialect: EngineDialect = VLLM) -> None:
        self.index = index
        self.gpu = gpu
        self.recorder = MetricsRecorder(dialect, kv_capacity_tokens)
        self.model: DecodeModel[SimRequest] = DecodeModel(gpu.profile, kv_capacity_tokens, max_running, watermark, self.recorder)
        self.counters = EngineCounters()
        self.incoming = 0
        """Requests routed here whose KV cache is still in transfer."""
        self._hook: StepHook | None = None
        self.end_seq = 0
        """The simulator's number for the event that ends the running step; others are stale."""

    @property
    def hook(self) -> HookSink | None:
        """The engine hook's reader (rich view only): the messages a hooked engine publishes."""
        return self._hook.sink if self._hook is not None else None

    @hook.setter
    def hook(self, sink: HookSink | None) -> None:
        self._hook = StepHook(sink) if sink is not None else None

    @property
    def hook_step(self) -> int:
        """The id of the latest step the hook published (0 without a hook)."""
        return self._hook.published if self._hook is not None else 0

    @property
    def busy(self) -> bool:
        return self.model.busy

    @property
    def load(self) -> int:
        model = self.model
        return len(model.running) + len(model.waiting) + self.incoming

    @property
    def iteration_log(self) -> list[tuple[int, int, int, int]]:
        return self.model.iteration_log

    def enqueue(self, request: SimRequest, now_s: float) -> None:
        request.decode_instance = self.index
        self.model.enqueue(request, now_s)

    def start_step(self, now_s: float) -> bool:
        if not self.model.start_step(now_s):
            return False
        if self._hook is not None:
            self._hook.decode_started(self.model, now_s)
        return True

    def run_step(self, now_s: float) -> float:
        """Run the scheduled step on the GPUs; its duration as planned now (``gpu.end_s`` may move)."""
        model = self.model
        # The phase's busy power unless part of the step overhead idles the GPU (``physics.step_power_watts``).
        power = model.step_power_watts if physics.overhead_idles(model.profile) else None
        return self.gpu.run(now_s, model.step_latency_s, model.step_sequences, power)

    def finish_step(self, now_s: float) -> list[SimRequest]:
        """Book the step; returns the requests that completed."""
        step_s = self.gpu.iteration_s
        batch = len(self.model.running)
        done = self.model.finish_step(now_s, step_s)
        self.counters.note_iteration(step_s)
        self.counters.generation_tokens += batch
        for request in done:
            request.finish_s = now_s
        if self._hook is not None:
            self._hook.step_done(now_s, step_s)
        return done
