"""An aggregated instance of the twin: the core aggregated model, its simulated GPUs, its page.

Scheduling (one token budget per step, decodes first, chunked prefill, admission, preemption)
is ``joulescale.engines.model.AggregatedModel``'s; the GPU group runs each step at the clocks in
force with the step's own power (a mixed step draws each phase's power over its part). The
step's booked energy is split between the phases in the same proportion, so a comparison can
still say what prefill and decode cost; the idle energy of the shared GPUs is booked to decode.
"""

from __future__ import annotations

from joulescale.engines.dialects import VLLM, EngineDialect
from joulescale.engines.model import AggregatedModel
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import physics
from joulescale.twin.counters import EngineCounters
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.request import SimRequest


class AggregatedInstance:
    __slots__ = ("_energy_at_start_j", "_prefill_share", "counters", "end_seq", "gpu", "index", "model",
                 "prefill_busy_j", "recorder")

    def __init__(self, index: int, gpu: SimGpuGroup, token_budget: int, kv_capacity_tokens: int, max_running: int,
                 watermark: float, dialect: EngineDialect = VLLM) -> None:
        self.index = index
        self.gpu = gpu
        self.recorder = MetricsRecorder(dialect, kv_capacity_tokens)
        self.model: AggregatedModel[SimRequest] = AggregatedModel(gpu.profile, token_budget, kv_capacity_tokens,
                                                                  max_running, watermark, self.recorder)
        self.counters = EngineCounters()
        self.end_seq = 0
        """The simulator's number for the event that ends the running step; others are stale."""
        self.prefill_busy_j = 0.0
        """The prefill parts' share of the busy energy (the rest is decode's)."""
        self._energy_at_start_j = 0.0
        self._prefill_share = 0.0

    @property
    def busy(self) -> bool:
        return self.model.busy

    @property
    def load(self) -> int:
        """Requests held (running and waiting): what a least-load router balances."""
        model = self.model
        return model.running + len(model.waiting)

    @property
    def queued_tokens(self) -> int:
        return self.model.queued_tokens

    def enqueue(self, request: SimRequest, now_s: float) -> None:
        request.decode_instance = self.index
        self.model.enqueue(request, now_s)

    def start_step(self, now_s: float) -> bool:
        if not self.model.start_step(now_s):
            return False
        for request in self.model.step:
            if request.prefill_start_s < 0.0:
                request.prefill_start_s = now_s
        return True

    def run_step(self, now_s: float) -> float:
        """Run the scheduled step on the GPUs; its duration as planned now (``gpu.end_s`` may move)."""
        model = self.model
        gpu = self.gpu
        self._energy_at_start_j = gpu.busy_energy_j
        self._prefill_share = self._prefill_energy_share(gpu.target_mhz)
        return gpu.run(now_s, model.step_latency_s, max(model.step_batch + len(model.step), 1), model.step_power_watts)

    def _prefill_energy_share(self, sm_clock_mhz: int) -> float:
        model = self.model
        if not model.step_tokens:
            return 0.0
        if not model.step_batch:
            return 1.0
        profile = self.gpu.profile
        prompts = len(model.step)
        decode_s, prefill_s, overhead_s = physics.mixed_step_times_s(
            profile, model.step_batch, model.decode.context_tokens, model.step_tokens, model.step_log[-1][3],
            sm_clock_mhz, prompts)
        prefill_j = prefill_s * physics.busy_power_watts(profile, "prefill", sm_clock_mhz, max(prompts, 1))
        # The step overhead goes with the decodes (``physics.step_power_watts``).
        decode_j = (physics.step_power_watts(profile, decode_s, 0.0, overhead_s, sm_clock_mhz, model.step_batch, 0)
                    * (decode_s + overhead_s))
        return prefill_j / (prefill_j + decode_j)

    def finish_step(self, now_s: float) -> tuple[list[SimRequest], list[SimRequest]]:
        """Book the step; returns (finished requests, requests whose first token it produced)."""
        gpu = self.gpu
        step_s = gpu.iteration_s
        self.prefill_busy_j += (gpu.busy_energy_j - self._energy_at_start_j) * self._prefill_share
        model = self.model
        batch = model.step_batch
        done = model.finish_step(now_s, step_s)
        first = [r for r in model.prefilled if r.first_token_s < 0.0]
        for request in first:
            request.prefill_done_s = now_s
            request.first_token_s = now_s  # no KV transfer: the token is out with the step
        counters = self.counters
        counters.note_iteration(step_s)
        counters.prompt_tokens += sum(r.prompt_tokens for r in first)
        counters.generation_tokens += batch + len(model.prefilled)
        for request in done:
            request.finish_s = now_s
        return done, first
