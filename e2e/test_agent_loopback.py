"""Issue 6 item 8: the agent end to end on loopback, no cluster.

Two identical P/D pairs of simulated engines (one prefill, one decode, Llama-8B TP1 on H100
physics) receive the same time-compressed slice of the Azure conversation trace: a light
phase (0.3x the trace's rate) then a heavy phase (6x). The agent (simulated GPU backend,
``joulescale`` policy) controls pair A; pair B runs at default clocks (agent off). Checks:
clocks are lower under light load than under heavy load, TPOT attainment of A meets the
SLO percentile, A spends less GPU energy than B, and every clock is reset after SIGTERM.
Prompts are capped at 4096 tokens and outputs at 128 to keep the run under a minute.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness.agentprocs import free_port, http_get, start_agent, start_engine, wait_for, write_instances
from e2e.harness.enginepairs import EnginePair, attainment, light_then_heavy, tpot_between_phases_s
from e2e.simengine.loadgen import RequestResult, replay
from joulescale.profiles import load_profile
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile
from joulescale_agent.gpu.simulated import SimulatedBackend

PROFILE = "h100-sxm-llama-8b-tp1"
TTFT_MS, PERCENTILE = 1000.0, 90
LIGHT_S, HEAVY_S = 8.0, 8.0
MAX_PROMPT, MAX_OUTPUT = 4096, 128
# A tight TPOT for an 8B model on one H100, from its profile: light load fits at the lowest
# clock, the heavy burst needs a higher one.
TPOT_MS = 1000 * tpot_between_phases_s(load_profile(PROFILE), light_then_heavy(LIGHT_S, HEAVY_S, MAX_PROMPT, MAX_OUTPUT))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[EnginePair, EnginePair, list[subprocess.Popen[bytes]]]]:
    profile = load_profile(PROFILE)
    procs: list[subprocess.Popen[bytes]] = []
    pairs = []
    for name in ("on", "off"):
        sim_dir = tmp_path / name
        SimGpuDir.create(sim_dir, specs_from_profile(profile, ["GPU-prefill", "GPU-decode"]))
        pair = EnginePair(
            name, sim_dir, {"prefill": free_port(), "decode": free_port()}, SimulatedBackend(sim_dir),
            ("GPU-prefill", "GPU-decode"),
        )
        for role, port in pair.ports.items():
            procs.append(
                start_engine(role, port, sim_dir, [f"GPU-{role}"], tmp_path / f"{name}-{role}.log", PROFILE)
            )
        pairs.append(pair)
    for pair in pairs:
        for role in ("prefill", "decode"):
            wait_for(lambda p=pair, r=role: http_get(f"{p.url(r)}/health")[0] == 200, 30, f"{role} engine")
    yield pairs[0], pairs[1], procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.quiet
@pytest.mark.timeout(110)
def test_agent_saves_energy_keeps_tpot_and_resets_clocks_on_sigterm(
    tmp_path: Path, rig: tuple[EnginePair, EnginePair, list[subprocess.Popen[bytes]]]
) -> None:
    on, off, procs = rig
    instances = tmp_path / "instances.json"
    policy = {
        "policy": "joulescale",
        "profile": PROFILE,
        "slo": {"ttft_ms": TTFT_MS, "tpot_ms": TPOT_MS, "percentile": PERCENTILE},
    }
    write_instances(
        instances,
        [
            {
                "namespace": "demo",
                "pod": f"svc-{role}-0",
                "role": role,
                "engine": "vllm",
                "metrics_url": f"{on.url(role)}/metrics",
                "gpus": [f"GPU-{role}"],
                "policy": policy,
            }
            for role in ("prefill", "decode")
        ],
    )
    agent_port = free_port()
    agent = start_agent(on.sim_dir, tmp_path / "state.json", instances, agent_port, tmp_path / "agent.log")
    procs.append(agent)
    wait_for(lambda: http_get(f"http://127.0.0.1:{agent_port}/readyz")[0] == 200, 30, "agent ready")

    requests = light_then_heavy(LIGHT_S, HEAVY_S, MAX_PROMPT, MAX_OUTPUT)
    clocks: dict[str, list[tuple[float, int]]] = {"GPU-prefill": [], "GPU-decode": []}

    async def sample_clocks(start_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for gpu, series in clocks.items():
                series.append((time.monotonic() - start_s, on.gpus.sm_clock_mhz(gpu)))
            await asyncio.sleep(0.05)

    async def run() -> tuple[list[RequestResult], list[RequestResult], float, float]:
        energy_start = (on.energy_j(), off.energy_j())
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_clocks(time.monotonic(), stop))
        results_on, results_off = await asyncio.gather(
            replay(requests, on.url("prefill"), on.url("decode")),
            replay(requests, off.url("prefill"), off.url("decode")),
        )
        await asyncio.sleep(0.5)  # both pairs idle the same tail
        stop.set()
        await sampler
        return results_on, results_off, on.energy_j() - energy_start[0], off.energy_j() - energy_start[1]

    results_on, _results_off, energy_on_j, energy_off_j = asyncio.run(run())
    f_max = max(load_profile(PROFILE).supported_sm_clocks_mhz)

    def mean_clock(gpu: str, lo_s: float, hi_s: float) -> float:
        return statistics.fmean(c for t, c in clocks[gpu] if lo_s <= t < hi_s)

    light = {gpu: mean_clock(gpu, 1.0, LIGHT_S) for gpu in clocks}
    heavy = {gpu: mean_clock(gpu, LIGHT_S + 1.0, LIGHT_S + HEAVY_S) for gpu in clocks}
    tpots_on = [r.tpot_s for r in results_on if r.tpot_s is not None]
    report = (
        f"light {light}, heavy {heavy}, energy on {energy_on_j:.0f} J off {energy_off_j:.0f} J, "
        f"TPOT attainment {attainment(tpots_on, TPOT_MS / 1000):.3f}"
    )
    print(report)
    assert all(light[g] < f_max for g in clocks), report
    assert heavy["GPU-decode"] > light["GPU-decode"], report

    tpots_on = [r.tpot_s for r in results_on if r.tpot_s is not None]
    assert len(tpots_on) == len([r for r in requests if r.output_tokens > 1])
    assert attainment(tpots_on, TPOT_MS / 1000) >= PERCENTILE / 100, sorted(tpots_on)[-10:]
    assert energy_on_j < energy_off_j, report

    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=10) == 0
    assert on.gpus.locked_mhz("GPU-prefill") is None
    assert on.gpus.locked_mhz("GPU-decode") is None
