"""A decode instance of the twin: the core engine model, its simulated GPUs and its /metrics page.

Admission, preemption and the O(1) batch aggregate are ``joulescale.engines.model``'s; this adds
what only the cluster knows (requests still in KV transfer, for the router) and the engine hook's
per-request view.
"""

from __future__ import annotations

from joulescale.engines.dialects import VLLM, EngineDialect
from joulescale.engines.model import DecodeModel
from joulescale.engines.observation import DecodeProgress
from joulescale.engines.recorder import MetricsRecorder
from joulescale.twin.counters import EngineCounters
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.request import SimRequest


class DecodeInstance:
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
        return self.model.start_step(now_s)

    def run_step(self, now_s: float) -> float:
        """Run the scheduled step on the GPUs; its duration as planned now (``gpu.end_s`` may move)."""
        return self.gpu.run(now_s, self.model.step_latency_s, self.model.step_sequences)

    def finish_step(self, now_s: float) -> list[SimRequest]:
        """Book the step; returns the requests that completed."""
        step_s = self.gpu.iteration_s
        batch = len(self.model.running)
        done = self.model.finish_step(now_s, step_s)
        self.counters.note_iteration(step_s)
        self.counters.generation_tokens += batch
        for request in done:
            request.finish_s = now_s
        return done

    def rich_progress(self, now_s: float) -> tuple[DecodeProgress, ...]:
        """The engine hook's view of the running batch."""
        model = self.model
        out = []
        for r in model.running.values():
            generated = model.generated_tokens(r)
            out.append(DecodeProgress(generated, now_s - r.first_token_s, r.prompt_tokens + 1 + generated))
        return tuple(out)
