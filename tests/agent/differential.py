"""Both sides of the differential test: one request script through the twin and through the real
agent on loopback, each reduced to clock requests ``(t, MHz)`` per phase and GPU energy per window.

Times on both sides count from the script's start: the twin's zero, and on loopback the
monotonic instant the load generator's replay starts (engines, agent and the test share the
host's monotonic clock).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import re
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from e2e.harness.agentprocs import free_port, http_get, start_agent, start_engine, wait_for, write_instances
from e2e.simengine.loadgen import replay
from joulescale.control.policy import ClockDecision, Slo
from joulescale.engines.observation import Phase
from joulescale.profiles import GpuProfile, physics
from joulescale.twin.cluster import Actuator, ClusterConfig, InstanceControl
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.policies import policy_run_setup
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import TraceRequest
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile

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
    arrivals_s: list[float] = field(default_factory=list)
    """When each request reached the prefill engine (loopback side)."""
    observed_s: dict[Phase, list[float]] = field(default_factory=dict)
    """When the agent built each observation it decided on (loopback side, from its log)."""
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
    scrapes_s: dict[Phase, list[float]] | None = None,
    scrape_delay_s: float = 0.01,
    handover_s: list[float] | None = None,
    engine: str = "vllm",
    delays_s: Delays | None = None,
    arrivals_s: list[float] | None = None,
) -> SideResult:
    """The twin's run of the script; ``scrapes_s``: read the pages when the agent did instead of
    on the twin's periodic schedule, observing and requesting clocks after ``delays_s[(phase,
    read instant)]`` (``scrape_delay_s`` where the agent left no trace of a read); ``handover_s``:
    hand each request to decode when the load generator did; ``arrivals_s``: and to prefill when
    it reached the engine (the load generator's send is a little late, a different amount each
    time, and a prefill step that ends near a page read lands on the other side of it)."""
    delays_s = delays_s or {}
    if arrivals_s is not None:
        requests = [
            TraceRequest(arrival_s, r.prompt_tokens, r.output_tokens)
            for r, arrival_s in zip(requests, arrivals_s, strict=True)
        ]
    cluster = ClusterConfig(
        profile,
        1,
        1,
        engine=engine,
        kv_medium=LOOPBACK_KV_MEDIUM,
        view="metrics",
        scrape_period_s=scrape_period_s,
        scrape_delay_s=scrape_delay_s,
    )
    setup = policy_run_setup(policy, cluster, slo, None)
    result = SideResult(windows=windows)

    def control(phase: Phase, index: int) -> InstanceControl:
        inner = setup.control(phase, index)
        log = result.requests.setdefault(phase, [])
        return InstanceControl(inner.policy, _LoggingActuator(inner.actuator, log), inner.observes)

    times = None
    if scrapes_s is not None:
        times = {
            (phase, 0): [(at_s, *delays_s.get((phase, at_s), (scrape_delay_s, 0.0))) for at_s in scrapes_s[phase]]
            for phase in PHASES
        }
    run = simulate(
        requests, setup.cluster, control, record_busy=True, scrape_times=times, handover_s=handover_s
    )
    for phase, gpu in zip(PHASES, (run.prefill[0].gpu, run.decode[0].gpu), strict=True):
        result.energy_j[phase] = [window_energy_j(gpu, lo, hi) for lo, hi in windows]
    return result


Delays = dict[tuple[Phase, float], tuple[float, float]]
"""(phase, page read instant) -> (delay until the agent built its observation, further delay
until it wrote the lock it decided on)."""


def decision_delays_s(loop: SideResult) -> Delays:
    """What the agent did after each page read, for the twin to replay: when it built the
    observation (its log), so the twin's observations span the agent's intervals (a policy
    compares an interval with the busy time the page shows, and a millisecond of the agent's
    parse jitter decides that on some scrapes), and where it locked a clock, when (the lock's
    instant, a little after the observation's). Without the log: the delay from the page read to
    each lock, for both."""
    delays: Delays = {}
    for phase in PHASES:
        scrapes = loop.scrapes_s[phase]
        observed = loop.observed_s.get(phase, [])
        for at_s in observed:
            read = bisect.bisect_right(scrapes, at_s) - 1
            if read >= 0:
                delays[(phase, scrapes[read])] = (at_s - scrapes[read], 0.0)
        for lock_s, _ in loop.requests[phase]:
            read = bisect.bisect_right(scrapes, lock_s) - 1
            if read < 0 or lock_s - scrapes[read] >= 0.05:
                continue
            read_s = scrapes[read]
            observe_s = delays[(phase, read_s)][0] if observed and (phase, read_s) in delays else None
            if observe_s is None:
                delays[(phase, read_s)] = (lock_s - read_s, 0.0)
            else:
                delays[(phase, read_s)] = (observe_s, max(0.0, lock_s - read_s - observe_s))
    return delays


def decision_delay_s(loop: SideResult) -> float:
    """The agent's median time from reading a page to building its observation."""
    delays = [observe_s for observe_s, _ in decision_delays_s(loop).values()]
    return statistics.median(delays) if delays else 0.0


@dataclass
class Loopback:
    sim: SimGpuDir
    urls: dict[Phase, str]
    agent_port: int
    procs: list[subprocess.Popen[bytes]]
    agent_log: Path


@contextmanager
def loopback(
    tmp_path: Path, profile: GpuProfile, policy: dict[str, object], engine: str = "vllm"
) -> Iterator[Loopback]:
    """A prefill and a decode simulated engine on simulated GPUs, and the real agent controlling
    both through a static instances file."""
    sim = SimGpuDir.create(tmp_path / "sim", specs_from_profile(profile, [f"GPU-{p}" for p in PHASES]))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        urls: dict[Phase, str] = {}
        for phase in PHASES:
            port = free_port()
            procs.append(
                start_engine(
                    phase, port, sim.root, [f"GPU-{phase}"], tmp_path / f"{phase}.log", profile.name, engine
                )
            )
            urls[phase] = f"http://127.0.0.1:{port}"
        for phase in PHASES:
            wait_for(lambda u=urls[phase]: http_get(f"{u}/health")[0] == 200, 30, f"{phase} engine")
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
        agent_port = free_port()
        agent_log = tmp_path / "agent.log"
        procs.append(
            start_agent(
                sim.root, tmp_path / "state.json", instances, agent_port, agent_log, "--log-level", "DEBUG"
            )
        )
        wait_for(lambda: http_get(f"http://127.0.0.1:{agent_port}/readyz")[0] == 200, 30, "agent ready")
        time.sleep(3 * SETTLE_WAIT_S)  # the agent's first decisions, before traffic
        yield Loopback(sim, urls, agent_port, procs, agent_log)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_OBSERVED = re.compile(r"svc-(prefill|decode)-0: observed at (\S+)$")


def observed_s(agent_log: Path, start_s: float) -> dict[Phase, list[float]]:
    """The instants the agent built its observations at (its debug log), per phase."""
    observed: dict[Phase, list[float]] = {p: [] for p in PHASES}
    for line in agent_log.read_text().splitlines():
        match = _OBSERVED.search(line)
        if match:
            phase: Phase = "prefill" if match.group(1) == "prefill" else "decode"
            observed[phase].append(float(match.group(2)) - start_s)
    return observed


def _energy_now_j(sim: SimGpuDir, uuid: str, now_s: float) -> float:
    """The simulated GPU's energy counter, extended from its last update at the power in force."""
    state = sim.read_energy(uuid)
    extra_j = state.power_watts * (now_s - state.updated_at_s) if state.updated_at_s is not None else 0.0
    return state.energy_mj / 1000.0 + extra_j


def run_loopback(
    rig: Loopback, requests: list[TraceRequest], boundaries_s: list[float], poll_s: float = 0.002
) -> SideResult:
    """Replay the script against the engines, record every lock the agent writes (from the
    simulated GPU state) and read the energy counters at the phase boundaries."""
    start_s = time.monotonic() + 0.2
    result = SideResult()
    seen = {p: rig.sim.read_lock(f"GPU-{p}") for p in PHASES}
    for phase, lock in seen.items():
        result.requests[phase] = [] if lock is None else [(lock.changed_at_s - start_s, lock.locked_mhz or 0)]
    readings: list[tuple[float, dict[Phase, float]]] = []

    async def watch_locks(stop: asyncio.Event) -> None:
        while not stop.is_set():
            for phase in PHASES:
                lock = rig.sim.read_lock(f"GPU-{phase}")
                if lock is not None and lock != seen[phase]:
                    seen[phase] = lock
                    result.requests[phase].append((lock.changed_at_s - start_s, lock.locked_mhz or 0))
            await asyncio.sleep(poll_s)

    async def read_energy() -> None:
        for boundary_s in boundaries_s:
            await asyncio.sleep(max(0.0, start_s + boundary_s - time.monotonic()))
            now_s = time.monotonic()
            readings.append((now_s - start_s, {p: _energy_now_j(rig.sim, f"GPU-{p}", now_s) for p in PHASES}))

    async def main() -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_locks(stop))
        results, _ = await asyncio.gather(
            replay(requests, rig.urls["prefill"], rig.urls["decode"], start_s), read_energy()
        )
        result.handover_s = [
            math.inf if r.decode_arrival_s is None else r.decode_arrival_s - start_s for r in results
        ]
        result.arrivals_s = [
            math.nan if r.prefill_arrival_s is None else r.prefill_arrival_s - start_s for r in results
        ]
        result.watched_until_s = time.monotonic() - start_s
        stop.set()
        await watcher

    asyncio.run(main())
    for phase in PHASES:
        status, body = http_get(f"{rig.urls[phase]}/sim/scrapes")
        assert status == 200, body
        result.scrapes_s[phase] = [t - start_s for t in json.loads(body)["scrapes_s"]]
    result.observed_s = observed_s(rig.agent_log, start_s)
    result.windows = [(a[0], b[0]) for a, b in itertools.pairwise(readings)]
    for phase in PHASES:
        result.energy_j[phase] = [b[1][phase] - a[1][phase] for a, b in itertools.pairwise(readings)]
    return result
