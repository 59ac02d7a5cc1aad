"""A prefill instance of the twin: the core engine model, its simulated GPUs and its /metrics page.

Scheduling (FIFO, chunked prefill under the token budget) is ``joulescale.engines.model``'s; the
page is a ``MetricsRecorder`` in the engine's dialect; the GPU group decides how long a step takes
at the clocks in force. The twin's event loop drives time.
"""

from __future__ import annotations

from joulescale.engines.dialects import VLLM, EngineDialect
from joulescale.engines.model import PrefillModel
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import physics
from joulescale.twin.counters import EngineCounters
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.hooked import Hooked
from joulescale.twin.request import SimRequest


class PrefillInstance(Hooked):
    __slots__ = ("counters", "end_seq", "gpu", "index", "model", "recorder")

    def __init__(self, index: int, gpu: SimGpuGroup, token_budget: int, dialect: EngineDialect = VLLM) -> None:
        self.index = index
        self.gpu = gpu
        self.recorder = MetricsRecorder(dialect, gpu.profile.kv_capacity_tokens)
        self.model: PrefillModel[SimRequest] = PrefillModel(gpu.profile, token_budget, self.recorder,
                                                            dialect.schedules_ahead)
        self.counters = EngineCounters()
        Hooked.__init__(self)
        self.end_seq = 0
        """The simulator's number for the event that ends the running step; others are stale."""

    @property
    def busy(self) -> bool:
        return self.model.busy

    @property
    def queued_tokens(self) -> int:
        return self.model.queued_tokens

    @property
    def batch_log(self) -> list[tuple[int, int, int]]:
        return self.model.batch_log

    def enqueue(self, request: SimRequest, now_s: float) -> None:
        self.model.enqueue(request, now_s)

    def start_step(self, now_s: float) -> bool:
        if not self.model.start_step(now_s):
            return False
        for request in self.model.step:
            if request.prefill_start_s < 0.0:
                request.prefill_start_s = now_s
        if self._hook is not None:
            self._hook.prefill_started(self.model, now_s)
        return True

    def run_step(self, now_s: float) -> float:
        """Run the scheduled step on the GPUs; its duration as planned now (``gpu.end_s`` may move)."""
        model = self.model
        # The phase's busy power unless part of the step overhead idles the GPU (``physics.step_power_watts``).
        power = model.step_power_watts if physics.overhead_idles(model.profile) else None
        return self.gpu.run(now_s, model.step_latency_s, model.step_sequences, power)

    def finish_step(self, now_s: float) -> list[SimRequest]:
        step_s = self.gpu.iteration_s
        done = self.model.finish_step(now_s, step_s)
        counters = self.counters
        counters.note_iteration(step_s)
        counters.prompt_tokens += sum(r.prompt_tokens for r in done)
        counters.generation_tokens += len(done)
        if self._hook is not None:
            self._hook.step_done(now_s, step_s)
        return done
