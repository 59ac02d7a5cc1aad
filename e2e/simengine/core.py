"""The engine's scheduler: FIFO admission, iterations timed by the profile physics.

Role ``prefill`` runs one prefill per request (the P/D prefill side answers with one token);
role ``decode`` admits requests whose KV arrived (their prompt counts as context) and emits one
token per running request per iteration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from e2e.simengine.metrics import EngineMetrics
from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.observation import Phase
from joulescale.profiles import GpuProfile, physics
from joulescale.profiles.settle import WorkPlan, plan_work
from joulescale_agent.gpu.simstate import LockState, SimGpuDir, SimGpuMeter, clock_change, effective_clock_mhz

_MAX_LAG_S = 0.05
"""Behind schedule by more than this, the engine restarts its schedule from now."""


@dataclass(eq=False)
class SimRequest:
    prompt_tokens: int
    max_tokens: int
    arrival_s: float
    generated: int = 0
    started_s: float | None = None
    first_token_s: float | None = None
    finished_s: float | None = None
    tokens: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def context_tokens(self) -> int:
        return self.prompt_tokens + self.generated

    @property
    def tpot_s(self) -> float | None:
        if self.first_token_s is None or self.finished_s is None or self.generated < 2:
            return None
        return (self.finished_s - self.first_token_s) / (self.generated - 1)


@dataclass(frozen=True)
class EngineLimits:
    max_batched_tokens: int = DEFAULT_TOKEN_BUDGET
    """Prefill token budget per iteration."""
    max_running: int = 256
    """Decode batch size limit."""


class SimEngine:
    def __init__(
        self,
        role: Phase,
        profile: GpuProfile,
        gpus: SimGpuDir,
        gpu_uuids: list[str],
        metrics: EngineMetrics,
        limits: EngineLimits = EngineLimits(),
    ) -> None:
        self.role = role
        self.profile = profile
        self.metrics = metrics
        self.limits = limits
        self._gpus = gpus
        self._uuid = gpu_uuids[0]
        self._spec = {s.uuid: s for s in gpus.specs()}[self._uuid]
        self._meters = [SimGpuMeter(gpus, u) for u in gpu_uuids]
        self.waiting: list[SimRequest] = []
        self.running: list[SimRequest] = []
        self._work = asyncio.Event()
        self.iterations = 0
        self._next_start_s: float | None = None

    def submit(self, request: SimRequest) -> None:
        self.waiting.append(request)
        self._work.set()

    def clock_mhz(self, now_s: float) -> int:
        return effective_clock_mhz(self._spec, self._gpus.read_lock(self._uuid), now_s)

    def kv_usage(self) -> float:
        used = sum(r.context_tokens for r in self.running)
        return min(used / self.profile.kv_capacity_tokens, 1.0)

    def _set_power(self, now_s: float, watts: float) -> None:
        for meter in self._meters:
            meter.set_power(now_s, watts)

    async def run(self) -> None:
        self._set_power(time.monotonic(), self.profile.idle_power_watts)
        while True:
            if not self.waiting and not self.running:
                self._set_power(time.monotonic(), self.profile.idle_power_watts)
                self._work.clear()
                await self._work.wait()
                self._next_start_s = None
            await self._iterate()

    async def _iterate(self) -> None:
        # Iterations follow each other on the physics' schedule, not on the event loop's wake-ups:
        # the next one starts when the previous one *should* have ended, so Python overhead and
        # sleep overshoot do not stretch the simulated GPU's timing (unless it fell far behind).
        now_s = time.monotonic()
        scheduled_s = self._next_start_s
        start_s = (
            scheduled_s if scheduled_s is not None and 0.0 <= now_s - scheduled_s < _MAX_LAG_S else now_s
        )
        if self.role == "prefill":
            batch, latency_s = self._prefill_batch()
        else:
            batch, latency_s = self._decode_batch()
        # A request cannot join an iteration that started before it arrived.
        start_s = max(start_s, max((r.arrival_s for r in batch if r.started_s is None), default=start_s))
        end_s = await self._run_on_gpu(start_s, latency_s)
        self._next_start_s = end_s
        self.iterations += 1
        self._finish_iteration(batch, start_s, end_s)

    async def _run_on_gpu(self, start_s: float, latency_s: Callable[[int], float]) -> float:
        """Run one iteration in real time by the core's settle rule (joulescale.profiles.settle):
        a clock the agent requests while it runs takes effect ``settle`` later and the work left
        then runs at it, as in the twin. The lock is polled at least every half settle time, so
        a change is always seen before it takes effect; the meter follows each segment's power."""
        lock = self._gpus.read_lock(self._uuid)
        plan = self._plan(start_s, 1.0, lock, latency_s)
        self._set_power(start_s, self._power(plan.head_mhz))
        switched = False
        poll_s = self._spec.settle_s / 2 if self._spec.settle_s > 0 else _MAX_LAG_S
        while True:
            boundary_s = plan.switch_s if not switched and plan.switch_s < plan.end_s else plan.end_s
            await asyncio.sleep(max(min(boundary_s, time.monotonic() + poll_s) - time.monotonic(), 0.0))
            seen = self._gpus.read_lock(self._uuid)
            if seen != lock and seen is not None and seen.changed_at_s < plan.end_s:
                at_s = max(seen.changed_at_s, plan.from_s)
                lock = seen
                plan = self._plan(at_s, max(0.0, plan.work - plan.done_at(at_s)), lock, latency_s)
                switched = False
                continue
            if time.monotonic() < boundary_s:
                continue
            if boundary_s == plan.end_s:
                return plan.end_s
            self._set_power(plan.switch_s, self._power(plan.tail_mhz))
            switched = True

    def _plan(
        self, from_s: float, work: float, lock: LockState | None, latency_s: Callable[[int], float]
    ) -> WorkPlan:
        change = clock_change(self._spec, lock)
        if change is None:
            return plan_work(from_s, work, self._spec.default_mhz, None, from_s, latency_s)
        pending = change.target_mhz if change.effective_at_s > from_s else None
        return plan_work(from_s, work, change.clock_at(from_s), pending, change.effective_at_s, latency_s)

    def _power(self, sm_clock_mhz: int) -> float:
        return physics.busy_power_watts(self.profile, self.role, sm_clock_mhz)

    def _prefill_batch(self) -> tuple[list[SimRequest], Callable[[int], float]]:
        batch: list[SimRequest] = []
        tokens = 0
        while self.waiting and (
            not batch or tokens + self.waiting[0].prompt_tokens <= self.limits.max_batched_tokens
        ):
            request = self.waiting.pop(0)
            batch.append(request)
            tokens += request.prompt_tokens
        self.running = batch
        prompts = [r.prompt_tokens for r in batch]
        return batch, lambda mhz: physics.prefill_latency_s(self.profile, prompts, mhz)

    def _decode_batch(self) -> tuple[list[SimRequest], Callable[[int], float]]:
        capacity = self.profile.kv_capacity_tokens
        used = sum(r.context_tokens for r in self.running)
        while self.waiting and len(self.running) < self.limits.max_running:
            if used + self.waiting[0].prompt_tokens > capacity and self.running:
                break
            request = self.waiting.pop(0)
            used += request.prompt_tokens
            self.running.append(request)
        batch = list(self.running)
        context = sum(r.context_tokens for r in batch)
        size = len(batch)
        return batch, lambda mhz: physics.decode_latency_s(self.profile, size, context, mhz)

    def _finish_iteration(self, batch: list[SimRequest], start_s: float, end_s: float) -> None:
        step_s = end_s - start_s
        prompt_tokens = 0
        for request in batch:
            if request.started_s is None:
                request.started_s = start_s
                self.metrics.queue_time.observe(start_s - request.arrival_s)
                prompt_tokens += request.prompt_tokens if self.role == "prefill" else 0
            request.generated += 1
            request.tokens.put_nowait(request.generated)
            if request.first_token_s is None:
                request.first_token_s = end_s
                self.metrics.ttft.observe(end_s - request.arrival_s)
            else:
                self.metrics.itl.observe(step_s)
            limit = 1 if self.role == "prefill" else request.max_tokens
            if request.generated >= limit:
                request.finished_s = end_s
                request.done.set()
        self.running = [r for r in self.running if r.finished_s is None]
        generated = len(batch)
        self.metrics.prompt_tokens.inc(prompt_tokens)
        self.metrics.generation_tokens.inc(generated)
        self.metrics.iteration_tokens.observe(prompt_tokens + (generated if self.role == "decode" else 0))
        # vLLM publishes scheduler stats at the end of a step; a request that arrived during the
        # step reaches its scheduler only after them.
        held = sum(1 for r in self.waiting if r.arrival_s <= start_s)
        self.metrics.set_queue(len(self.running), held, self.kv_usage())
