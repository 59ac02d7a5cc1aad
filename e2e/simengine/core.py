"""A real-time driver of the core engine model (joulescale.engines.model) on a simulated GPU.

The scheduling (chunked prefill, admission, preemption) and the /metrics contents are the core's,
the same the twin drives: this module only owns time. For each step it asks the model what to
run, times it with the profile physics at the clock the simulated GPU runs (the agent's locks in
the shared directory, by the core's settle rule, also when a clock settles mid-step), sleeps
that long, reports the step's end to the model and books the GPU's power per segment.

Role ``prefill`` is a P/D prefill instance (a request ends with its first token); role
``decode`` admits requests whose KV arrived and emits one token per running request per step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from e2e.simengine.metrics import VLLM_BLOCK_SIZE
from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.engines.dialects import EngineDialect
from joulescale.engines.hook_publish import HookSink, StepHook
from joulescale.engines.model import DecodeModel, EngineRequest, PrefillModel
from joulescale.engines.observation import Phase
from joulescale.engines.recorder import MetricsRecorder
from joulescale.engines.sample import EngineSample
from joulescale.profiles import GpuProfile
from joulescale.profiles.settle import WorkPlan, plan_work
from joulescale_agent.clock import Clock, monotonic
from joulescale_agent.gpu.simstate import LockState, SimGpuDir, SimGpuMeter, clock_change, effective_clock_mhz

_SCRAPES_KEPT = 100_000
_NO_SETTLE_POLL_S = 0.01
_MAX_LAG_S = 0.25
_CLOSE_WAIT_S = 0.05
"""A page read waits at most this long for the task to close a step whose work has ended."""
"""Behind schedule by more than this, the engine restarts its schedule from now. Up to it, steps
keep their times on the physics' schedule and the engine catches up, so a stall of the host (a
loaded CI machine, a GC pause) moves no work on the simulated GPU's timeline."""


def page_kv_capacity_tokens(dialect: EngineDialect, kv_capacity_tokens: int) -> int:
    """The KV cache an engine's page can state: vLLM counts whole blocks (its usage is used blocks
    over all blocks), so usage and ``cache_config_info`` agree only on a whole number of blocks."""
    if dialect.name == "vllm":
        return kv_capacity_tokens // VLLM_BLOCK_SIZE * VLLM_BLOCK_SIZE
    return kv_capacity_tokens


class SimRequest(EngineRequest):
    """A request of the HTTP face: the model's request plus what the client waits on."""

    __slots__ = ("done", "emitted", "finished_s", "tokens")

    def __init__(
        self, request_id: int, prompt_tokens: int, max_tokens: int, arrival_s: float, role: Phase
    ) -> None:
        # A P/D decode instance generates all but the first token (the prefill side's): asking it
        # for ``max_tokens`` means a request of ``max_tokens + 1`` output tokens.
        super().__init__(request_id, arrival_s, prompt_tokens, max_tokens + 1 if role == "decode" else 1)
        self.emitted = 0
        self.finished_s: float | None = None
        self.tokens: asyncio.Queue[int] = asyncio.Queue()
        self.done = asyncio.Event()

    @property
    def generated(self) -> int:
        return self.emitted

    @property
    def started_s(self) -> float | None:
        return self.scheduled_s if self.scheduled_s >= 0.0 else None

    @property
    def first_token_s(self) -> float | None:
        return self.engine_first_token_s if self.engine_first_token_s >= 0.0 else None

    @property
    def tpot_s(self) -> float | None:
        first = self.first_token_s
        if first is None or self.finished_s is None or self.emitted < 2:
            return None
        return (self.finished_s - first) / (self.emitted - 1)


@dataclass(frozen=True)
class EngineLimits:
    """The engine arguments the model needs (the twin's ``ClusterConfig`` defaults)."""

    max_batched_tokens: int = DEFAULT_TOKEN_BUDGET
    """Prefill token budget per step (vLLM --max-num-batched-tokens)."""
    max_running: int = 512
    """Decode batch size limit (vLLM --max-num-seqs)."""
    kv_watermark: float = 0.01


class SimEngine:
    def __init__(
        self,
        role: Phase,
        profile: GpuProfile,
        gpus: SimGpuDir,
        gpu_uuids: list[str],
        dialect: EngineDialect,
        limits: EngineLimits = EngineLimits(),
        clock: Clock = monotonic,
    ) -> None:
        self.role = role
        self.clock = clock
        """Monotonic seconds, shared with the agent (the lock files' instants): the host's clock,
        or a virtual one when engines and agent run in one virtual-time event loop."""
        self.profile = profile
        self.dialect = dialect
        self.recorder = MetricsRecorder(dialect, page_kv_capacity_tokens(dialect, profile.kv_capacity_tokens))
        self.model: PrefillModel[SimRequest] | DecodeModel[SimRequest] = (
            PrefillModel(profile, limits.max_batched_tokens, self.recorder, dialect.schedules_ahead)
            if role == "prefill"
            else DecodeModel(
                profile, profile.kv_capacity_tokens, limits.max_running, limits.kv_watermark, self.recorder
            )
        )
        self._gpus = gpus
        self._uuid = gpu_uuids[0]
        self._spec = {s.uuid: s for s in gpus.specs()}[self._uuid]
        self._meters = [SimGpuMeter(gpus, u) for u in gpu_uuids]
        self._inbox: list[SimRequest] = []
        """Arrived requests the model has not been given: they join at the next step start."""
        self._work = asyncio.Event()
        self._next_id = 0
        self.iterations = 0
        self._next_start_s: float | None = None
        self._step_end_s: float | None = None
        """When the running step's work ends by its current plan; None between steps."""
        self._step_closed = asyncio.Event()
        self.scrapes: deque[float] = deque(maxlen=_SCRAPES_KEPT)
        """When /metrics was read (monotonic s), so a test can replay the agent's scrape instants."""
        self._hook: StepHook | None = None

    @property
    def hook(self) -> HookSink | None:
        """The engine hook (``--hook-socket``): each step when it is decided, then its end, as the
        twin's rich view (``joulescale.engines.hook_publish.StepHook``)."""
        return self._hook.sink if self._hook is not None else None

    @hook.setter
    def hook(self, sink: HookSink | None) -> None:
        self._hook = StepHook(sink) if sink is not None else None

    def new_request(self, prompt_tokens: int, max_tokens: int) -> SimRequest:
        self._next_id += 1
        return SimRequest(self._next_id, prompt_tokens, max_tokens, self.clock(), self.role)

    def submit(self, request: SimRequest) -> None:
        self._inbox.append(request)
        self._work.set()

    @property
    def running(self) -> int:
        model = self.model
        return len(model.step) if isinstance(model, PrefillModel) else len(model.running)

    @property
    def waiting(self) -> int:
        model = self.model
        queued = model.waiting_count if isinstance(model, PrefillModel) else len(model.waiting)
        return queued + len(self._inbox)

    def clock_mhz(self, now_s: float) -> int:
        return effective_clock_mhz(self._spec, self._gpus.read_lock(self._uuid), now_s)

    def _set_power(self, now_s: float, watts: float) -> None:
        for meter in self._meters:
            meter.set_power(now_s, watts)

    def _hand_over(self, start_s: float) -> None:
        """Give the model the requests that arrived by ``start_s``; later ones wait for the next step."""
        joining = [r for r in self._inbox if r.arrival_s <= start_s]
        if joining:
            self._inbox = [r for r in self._inbox if r.arrival_s > start_s]
            for request in joining:
                self.model.enqueue(request, request.arrival_s)

    async def run(self) -> None:
        self._set_power(self.clock(), self.profile.idle_power_watts)
        while True:
            # Steps follow each other on the physics' schedule, not on the event loop's wake-ups:
            # the next one starts when the previous one *should* have ended, so Python overhead and
            # sleep overshoot do not stretch the simulated GPU's timing (unless it fell far behind).
            # An idle engine starts the moment a request arrives, not when this task wakes.
            now_s = self.clock()
            last_end_s = self._next_start_s
            scheduled_s = last_end_s
            if scheduled_s is None and self._inbox:
                scheduled_s = min(now_s, min(r.arrival_s for r in self._inbox))
            on_time = scheduled_s is not None and 0.0 <= now_s - scheduled_s < _MAX_LAG_S
            start_s = scheduled_s if on_time and scheduled_s is not None else now_s
            if last_end_s is not None and start_s != last_end_s:
                # Fell behind the schedule: the GPU idled from the last step's end until now.
                self._set_power(last_end_s, self.profile.idle_power_watts)
            self._hand_over(start_s)
            if not self.model.start_step(start_s):
                self._set_power(
                    last_end_s if last_end_s is not None else now_s, self.profile.idle_power_watts
                )
                self._next_start_s = None
                if not self._inbox:
                    self._work.clear()
                    await self._work.wait()
                continue
            self._step_closed.clear()
            if self._hook is not None:
                model = self.model
                if isinstance(model, PrefillModel):
                    self._hook.prefill_started(model, start_s)
                else:
                    self._hook.decode_started(model, start_s)
            end_s = await self._run_on_gpu(start_s, self.model.step_latency_s)
            # Requests that arrived while the step ran are queued by its end, as in the twin (they
            # land in the model's queue at once): the page the step publishes counts them waiting.
            self._hand_over(end_s)
            self._next_start_s = end_s
            self.iterations += 1
            self._finish_step(end_s, end_s - start_s)
            self._step_end_s = None
            self._step_closed.set()

    async def page_sample(self, read_s: float) -> EngineSample:
        """The page as the real engine shows it at ``read_s``. A step whose work ended by then is
        closed first: this task may wake a few ms after a step's end on a loaded host, and a real
        engine publishes the step when its GPU work ends, not when a Python task gets around to it."""
        deadline_s = self.clock() + _CLOSE_WAIT_S
        # Every step that ended by then: a task behind its schedule closes several in a row, and
        # the next one starts (on the schedule) before a waiting reader runs again.
        while (end_s := self._step_end_s) is not None and end_s <= read_s:
            wait_s = deadline_s - self.clock()
            if wait_s <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_closed(end_s), wait_s)
        return self.recorder.sample()

    async def _wait_closed(self, end_s: float) -> None:
        """Until the step that ends at ``end_s`` is closed (the running step changed)."""
        while self._step_end_s == end_s:
            await self._step_closed.wait()
            if self._step_end_s == end_s:
                await asyncio.sleep(0)

    def _finish_step(self, end_s: float, step_s: float) -> None:
        model = self.model
        done = model.finish_step(end_s, step_s)
        if self._hook is not None:
            self._hook.step_done(end_s, step_s)
        if isinstance(model, DecodeModel):
            for request in model.running.values():
                self._emit(request, model.generated_tokens(request))
        for request in done:
            self._emit(request, request.decode_tokens if self.role == "decode" else 1)
            request.finished_s = end_s
            request.done.set()

    @staticmethod
    def _emit(request: SimRequest, generated: int) -> None:
        while request.emitted < generated:
            request.emitted += 1
            request.tokens.put_nowait(request.emitted)

    async def _run_on_gpu(self, start_s: float, latency_s: Callable[[int], float]) -> float:
        """Run one step in real time by the core's settle rule (joulescale.profiles.settle): a
        clock the agent requests while it runs takes effect ``settle`` later and the work left
        then runs at it, as in the twin. The lock is polled at least every half settle time, so
        a change is always seen before it takes effect; the meter follows each segment's power."""
        lock = self._gpus.read_lock(self._uuid)
        plan = self._plan(start_s, 1.0, lock, latency_s)
        self._step_end_s = plan.end_s
        self._set_power(start_s, self._power(plan.head_mhz))
        switched = False
        poll_s = self._spec.settle_s / 2 if self._spec.settle_s > 0 else _NO_SETTLE_POLL_S
        while True:
            boundary_s = plan.switch_s if not switched and plan.switch_s < plan.end_s else plan.end_s
            now_s = self.clock()
            await asyncio.sleep(max(min(boundary_s, now_s + poll_s) - now_s, 0.0))
            seen = self._gpus.read_lock(self._uuid)
            if seen != lock and seen is not None and seen.changed_at_s < plan.end_s:
                at_s = max(seen.changed_at_s, plan.from_s)
                lock = seen
                plan = self._plan(at_s, max(0.0, plan.work - plan.done_at(at_s)), lock, latency_s)
                self._step_end_s = plan.end_s
                switched = False
                continue
            if self.clock() < boundary_s:
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
        return self.model.step_power_watts(sm_clock_mhz)
