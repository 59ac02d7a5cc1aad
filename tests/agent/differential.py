"""Both sides of the differential test: one request script through the twin and through the real
agent on loopback, each reduced to clock requests ``(t, MHz)`` per phase and GPU energy per window.

Times on both sides count from the script's start: the twin's zero, and on loopback the instant
the load generator's replay starts. The loopback side runs in one virtual-time event loop
(e2e/harness/virtualtime.py) whose clock the engines, the agent and the simulated GPUs share.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from e2e.harness.agentprocs import free_port, write_instances
from e2e.harness.virtualtime import run_virtual
from e2e.simengine.core import SimEngine
from e2e.simengine.loadgen import replay
from e2e.simengine.server import make_app
from joulescale.control.policy import ClockDecision, Slo
from joulescale.engines.dialects import dialect_for
from joulescale.engines.observation import Phase
from joulescale.profiles import GpuProfile, physics
from joulescale.twin.cluster import Actuator, ClusterConfig, InstanceControl
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.policies import policy_run_setup
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import TraceRequest
from joulescale_agent.agent import Agent
from joulescale_agent.exporter import AgentMetrics
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile
from joulescale_agent.main import (
    load_profiles,
    make_agent,
    make_backend,
    make_discovery,
    make_kube,
    parse_args,
)
from joulescale_agent.safety.statefile import StateFile

PHASES: tuple[Phase, Phase] = ("prefill", "decode")
LOOPBACK_KV_MEDIUM = "nvlink"
"""The twin's KV medium closest to the loopback hand-over (the load generator's decode request a
millisecond or two after the prefill answer; the simulated engines move no KV cache)."""
SETTLE_WAIT_S = 0.1
ClockRequests = list[tuple[float, int]]


@dataclass
class SideResult:
    """What one side did: clock requests and energy (J) per window, per phase."""

    requests: dict[Phase, ClockRequests] = field(default_factory=dict)
    energy_j: dict[Phase, list[float]] = field(default_factory=dict)
    windows: list[tuple[float, float]] = field(default_factory=list)
    scrapes_s: dict[Phase, list[float]] = field(default_factory=dict)
    """When the agent read each engine's page (loopback side)."""
    handover_s: list[float] = field(default_factory=list)
    """When each request reached the decode engine (loopback side; inf: it needed no decode)."""
    watched_until_s: float = math.inf
    """Loopback side: locks were recorded until then; the agent kept deciding after it, and the
    twin replays those later scrapes too, so decisions are compared up to this instant only."""


class _LoggingActuator:
    """The twin's actuator, logging each clock it requests."""

    def __init__(self, inner: Actuator, log: ClockRequests) -> None:
        self._inner = inner
        self._log = log

    def target_mhz(self, decision: ClockDecision, now_s: float, current_mhz: int) -> int | None:
        target = self._inner.target_mhz(decision, now_s, current_mhz)
        if target is not None:
            self._log.append((now_s, target))
        return target


def window_energy_j(gpu: SimGpuGroup, lo_s: float, hi_s: float) -> float:
    """Busy segments at their clock's power plus idle power for the rest of ``[lo_s, hi_s)``."""
    assert gpu.busy_log is not None
    tp = gpu.profile.tensor_parallel_size
    busy_s = 0.0
    energy_j = 0.0
    for start_s, duration_s, _, watts in gpu.busy_log:
        overlap_s = min(hi_s, start_s + duration_s) - max(lo_s, start_s)
        if overlap_s > 0:
            busy_s += overlap_s
            energy_j += tp * watts * overlap_s
    return energy_j + physics.idle_energy_j(gpu.profile, (hi_s - lo_s) - busy_s)


def run_twin(
    requests: list[TraceRequest],
    profile: GpuProfile,
    policy: str,
    slo: Slo,
    scrape_period_s: float,
    windows: list[tuple[float, float]],
    scrapes_s: dict[Phase, list[float]],
    handover_s: list[float],
    engine: str = "vllm",
) -> SideResult:
    """The twin's run of the script, reading the pages when the agent did (``scrapes_s``: the
    scrape phase is the agent's start) and handing each request to decode when the load generator
    did (``handover_s``: loopback moves no KV cache, the twin's link would take its time)."""
    cluster = ClusterConfig(
        profile,
        1,
        1,
        engine=engine,
        kv_medium=LOOPBACK_KV_MEDIUM,
        view="metrics",
        scrape_period_s=scrape_period_s,
        scrape_delay_s=0.0,
    )
    setup = policy_run_setup(policy, cluster, slo, None)
    result = SideResult(windows=windows)

    def control(phase: Phase, index: int) -> InstanceControl:
        inner = setup.control(phase, index)
        log = result.requests.setdefault(phase, [])
        return InstanceControl(inner.policy, _LoggingActuator(inner.actuator, log), inner.observes)

    times = {(phase, 0): scrapes_s[phase] for phase in PHASES}
    run = simulate(
        requests, setup.cluster, control, record_busy=True, scrape_times=times, handover_s=handover_s
    )
    for phase, gpu in zip(PHASES, (run.prefill[0].gpu, run.decode[0].gpu), strict=True):
        result.energy_j[phase] = [window_energy_j(gpu, lo, hi) for lo, hi in windows]
    return result


def _energy_now_j(sim: SimGpuDir, uuid: str, now_s: float) -> float:
    """The simulated GPU's energy counter, extended from its last update at the power in force."""
    state = sim.read_energy(uuid)
    extra_j = state.power_watts * (now_s - state.updated_at_s) if state.updated_at_s is not None else 0.0
    return state.energy_mj / 1000.0 + extra_j


@asynccontextmanager
async def _engines(
    sim: SimGpuDir, profile: GpuProfile, engine: str, now: Callable[[], float]
) -> AsyncIterator[dict[Phase, tuple[SimEngine, str]]]:
    """A prefill and a decode simulated engine, each behind its real HTTP face on loopback."""
    runners: list[web.AppRunner] = []
    tasks: list[asyncio.Task[None]] = []
    engines: dict[Phase, tuple[SimEngine, str]] = {}
    try:
        for phase in PHASES:
            sim_engine = SimEngine(phase, profile, sim, [f"GPU-{phase}"], dialect_for(engine), clock=now)
            runner = web.AppRunner(make_app(sim_engine, profile.model), access_log=None)
            await runner.setup()
            runners.append(runner)
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            tasks.append(asyncio.create_task(sim_engine.run()))
            engines[phase] = (sim_engine, f"http://127.0.0.1:{port}")
        yield engines
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in runners:
            await runner.cleanup()


@asynccontextmanager
async def _agent(
    tmp_path: Path, urls: dict[Phase, str], engine: str, policy: dict[str, object]
) -> AsyncIterator[Agent]:
    """The agent as its command line assembles it (static instances file, simulated GPU backend),
    on the running loop's clock."""
    instances = tmp_path / "instances.json"
    write_instances(
        instances,
        [
            {
                "namespace": "diff",
                "pod": f"svc-{phase}-0",
                "role": phase,
                "engine": engine,
                "metrics_url": f"{urls[phase]}/metrics",
                "gpus": [f"GPU-{phase}"],
                "policy": policy,
            }
            for phase in PHASES
        ],
    )
    args = parse_args(
        [
            "--backend", "simulated",
            "--sim-dir", str(tmp_path / "sim"),
            "--state-file", str(tmp_path / "state.json"),
            "--instances", str(instances),
            "--port", str(free_port()),
        ]
    )  # fmt: skip
    now = asyncio.get_running_loop().time
    state = StateFile(args.state_file)
    state.acquire()
    backend = make_backend(args, now)
    profiles = load_profiles(args.profiles_dir)
    _, events = make_kube(args)
    metrics = AgentMetrics()
    agent = make_agent(
        args,
        backend=backend,
        state=state,
        discovery=make_discovery(args, backend, metrics.registry, None, events, profiles),
        profiles=profiles,
        metrics=metrics,
        events=events,
        now=now,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    try:
        while not agent.health.ready:
            if running.done():
                raise AssertionError(f"the agent stopped: {running.result()}")
            await asyncio.sleep(0.01)
        yield agent
    finally:
        stop.set()
        await running
        state.release_lock()
        backend.close()


def run_loopback(
    tmp_path: Path,
    profile: GpuProfile,
    policy: dict[str, object],
    engine: str,
    requests: list[TraceRequest],
    boundaries_s: list[float],
    poll_s: float = 0.001,
) -> SideResult:
    """The script through two simulated engines and the agent, in one virtual-time event loop:
    record every lock the agent writes (the simulated GPU state), read the energy counters at the
    phase boundaries, and what the engines and the agent logged for the twin's replay."""
    sim = SimGpuDir.create(tmp_path / "sim", specs_from_profile(profile, [f"GPU-{p}" for p in PHASES]))
    result = SideResult()

    async def main() -> None:
        now = asyncio.get_running_loop().time
        async with (
            _engines(sim, profile, engine, now) as engines,
            _agent(tmp_path, {p: url for p, (_, url) in engines.items()}, engine, policy),
        ):
            await asyncio.sleep(3 * SETTLE_WAIT_S)  # the agent's first decisions, before traffic
            # An instant off the agent's 50 ms tick grid: no event of the script coincides with a
            # page read, whose order against it would be a matter of convention on each side.
            start_s = now() + 0.2 + 0.0123
            seen = {p: sim.read_lock(f"GPU-{p}") for p in PHASES}
            for phase, lock in seen.items():
                result.requests[phase] = (
                    [] if lock is None else [(lock.changed_at_s - start_s, lock.locked_mhz or 0)]
                )
            readings: list[tuple[float, dict[Phase, float]]] = []
            stop = asyncio.Event()

            async def watch_locks() -> None:
                while not stop.is_set():
                    for phase in PHASES:
                        lock = sim.read_lock(f"GPU-{phase}")
                        if lock is not None and lock != seen[phase]:
                            seen[phase] = lock
                            result.requests[phase].append((lock.changed_at_s - start_s, lock.locked_mhz or 0))
                    await asyncio.sleep(poll_s)

            async def read_energy() -> None:
                for boundary_s in boundaries_s:
                    await asyncio.sleep(max(0.0, start_s + boundary_s - now()))
                    at_s = now()
                    readings.append(
                        (at_s - start_s, {p: _energy_now_j(sim, f"GPU-{p}", at_s) for p in PHASES})
                    )

            watcher = asyncio.create_task(watch_locks())
            results, _ = await asyncio.gather(
                replay(requests, engines["prefill"][1], engines["decode"][1], start_s, now), read_energy()
            )
            result.watched_until_s = now() - start_s
            stop.set()
            await watcher
            result.handover_s = [
                math.inf if r.decode_arrival_s is None else r.decode_arrival_s - start_s for r in results
            ]
            for phase, (sim_engine, _) in engines.items():
                result.scrapes_s[phase] = [t - start_s for t in sim_engine.scrapes]
            result.windows = [(a[0], b[0]) for a, b in itertools.pairwise(readings)]
            for phase in PHASES:
                result.energy_j[phase] = [b[1][phase] - a[1][phase] for a, b in itertools.pairwise(readings)]

    run_virtual(main())
    return result
