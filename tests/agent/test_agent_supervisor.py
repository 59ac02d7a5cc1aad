"""The supervisor and static discovery: instances start, change policy in place, restart when
their GPUs change, and stop (with their clocks reset) when they disappear."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

from joulescale.control.policy import ClockBounds
from joulescale_agent.clock import monotonic
from joulescale_agent.control.instance import EngineInstance, InstancePolicy, LoopSettings
from joulescale_agent.control.loop import InstanceLoop
from joulescale_agent.control.supervisor import Supervisor
from joulescale_agent.discovery.static import StaticDiscovery
from joulescale_agent.engines.scrape import Scraper
from joulescale_agent.exporter import AgentMetrics
from joulescale_agent.gpu.simstate import SimGpuDir, SimGpuSpec
from joulescale_agent.gpu.simulated import SimulatedBackend
from joulescale_agent.safety.actuator import ClockActuator
from joulescale_agent.safety.statefile import StateFile
from tests.agent.fakes import CLOCKS, MetricsServer, ScriptedBrains
from tests.agent.fakes import SCRIPTED_POLICY as POLICY


async def settle(predicate: object, timeout_s: float = 2.0) -> None:
    deadline = monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_reconcile_starts_updates_restarts_and_stops_instances(
    tmp_path: Path, server: MetricsServer
) -> None:
    SimGpuDir.create(tmp_path, [SimGpuSpec(u, "sim", CLOCKS, 0.0, 75.0) for u in ("GPU-a", "GPU-b")])
    backend = SimulatedBackend(tmp_path)
    actuator = ClockActuator(backend, StateFile(tmp_path / "state.json"))
    brains, scraper = ScriptedBrains(), Scraper(0.1)
    settings = LoopSettings(scrape_hz=50.0)

    def make(instance: EngineInstance, policy: InstancePolicy) -> InstanceLoop:
        return InstanceLoop(
            instance,
            policy,
            fetch=scraper.fetch,
            actuator=actuator,
            brains=brains,
            metrics=AgentMetrics(),
            settings=settings,
            clock=monotonic,
        )

    supervisor = Supervisor(make)
    instance = EngineInstance("ns", "d0", "decode", "vllm", server.url, ("GPU-a",))
    await supervisor.reconcile({instance.key: (instance, POLICY)})
    await settle(lambda: backend.locked_mhz("GPU-a") == 1005)
    loop = supervisor.loops[instance.key]

    await supervisor.reconcile({instance.key: (instance, replace(POLICY, base_clock_mhz=1500))})
    await settle(lambda: backend.locked_mhz("GPU-a") == 1500)
    assert supervisor.loops[instance.key] is loop, "a policy change must not restart the loop"

    moved = replace(instance, gpus=("GPU-b",))
    await supervisor.reconcile({instance.key: (moved, POLICY)})
    await settle(lambda: backend.locked_mhz("GPU-b") == 1005)
    assert backend.locked_mhz("GPU-a") is None
    assert supervisor.loops[instance.key] is not loop

    await supervisor.reconcile({})
    assert supervisor.loops == {}
    assert backend.locked_mhz("GPU-b") is None
    assert actuator.state.locked == frozenset()
    await scraper.close()


async def test_static_discovery_yields_again_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    entry = {
        "pod": "p0",
        "role": "prefill",
        "metrics_url": "http://127.0.0.1:1/metrics",
        "gpus": ["GPU-a"],
        "policy": {
            "policy": "static",
            "profile": "h100-sxm-llama-8b-tp1",
            "slo": {"ttft_ms": 500, "tpot_ms": 50},
            "bounds": {"min_mhz": 900, "max_mhz": 1500},
        },
    }
    path.write_text(json.dumps({"instances": [entry]}))
    updates = StaticDiscovery(path, poll_s=0.01).updates().__aiter__()
    first = await asyncio.wait_for(updates.__anext__(), 2)
    instance, policy = first["default/p0"]
    assert (instance.role, instance.gpus) == ("prefill", ("GPU-a",))
    assert policy.bounds == ClockBounds(900, 1500)
    entry["policy"]["slo"] = {"ttft_ms": 300, "tpot_ms": 50}  # type: ignore[index]
    await asyncio.sleep(0.02)  # a distinct mtime
    path.write_text(json.dumps({"instances": [entry]}))
    second = await asyncio.wait_for(updates.__anext__(), 2)
    assert second["default/p0"][1].slo.ttft_ms == 300
    path.unlink()
    assert await asyncio.wait_for(updates.__anext__(), 2) == {}
    await updates.aclose()  # type: ignore[attr-defined]
