"""A decode instance of the twin: the core engine model, its simulated GPUs and its /metrics page.

Admission, preemption and the O(1) batch aggregate are ``joulescale.engines.model``'s; this adds
what only the cluster knows (requests still in KV transfer, for the router) and the engine hook's
messages (rich view).
"""

from __future__ import annotations

from joulescale.engines.dialects import VLLM, EngineDialect
from joulescale.engines.model import DecodeModel
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import physics
from joulescale.twin.counters import EngineCounters
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.hooked import Hooked
from joulescale.twin.request import SimRequest


class DecodeInstance(Hooked):
    __slots__ = ("counters", "end_seq", "gpu", "incoming", "index", "model", "recorder")

    def __init__(self, index: int, gpu: SimGpuGroup, kv_capacity_tokens: int, max_running: int,
                 watermark: float, dialect: EngineDialect = VLLM) -> None:
        self.index = index
        self.gpu = gpu
        self.recorder = MetricsRecorder(dialect, kv_capacity_tokens)
        self.model: DecodeModel[SimRequest] = DecodeModel(gpu.profile, kv_capacity_tokens, max_running, watermark, self.recorder)
        self.counters = EngineCounters()
        self.incoming = 0
        """Requests routed here whose KV cache is still in transfer."""
        Hooked.__init__(self)
        self.end_seq = 0
        """The simulator's number for the event that ends the running step; others are stale."""

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
