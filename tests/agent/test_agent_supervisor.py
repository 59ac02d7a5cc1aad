"""The supervisor and static discovery: instances start, change policy in place, restart when
their GPUs change, and stop (with their clocks reset) when they disappear."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from joulescale.control.policy import ClockBounds, DecisionReason
from joulescale.engines.observation import Observation
from joulescale_agent.agent import EXIT_DISCOVERY_FAILED, Agent
from joulescale_agent.clock import monotonic
from joulescale_agent.control.instance import EngineInstance, InstancePolicy, LoopSettings
from joulescale_agent.control.loop import InstanceLoop
from joulescale_agent.control.supervisor import RestartBackoff, Supervisor
from joulescale_agent.discovery.base import Desired
from joulescale_agent.discovery.static import StaticDiscovery
from joulescale_agent.engines.scrape import Scraper
from joulescale_agent.exporter import AgentMetrics, Health
from joulescale_agent.gpu.nvml import NvmlBackend
from joulescale_agent.gpu.simstate import SimGpuDir, SimGpuSpec
from joulescale_agent.gpu.simulated import SimulatedBackend
from joulescale_agent.safety.actuator import ClockActuator
from joulescale_agent.safety.statefile import StateFile
from tests.agent.fakes import CLOCKS, MetricsServer, ScriptedBrain, ScriptedBrains
from tests.agent.fakes import SCRIPTED_POLICY as POLICY
from tests.unit.agent.fake_pynvml import FakeDevice, FakeNvml


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


@dataclass
class CrashingBrains(ScriptedBrains):
    """The first ``crashes`` brains lock, then fail in a way that escapes the loop's own guard
    (``decide`` raises, and so does the ``reset`` the loop calls while releasing)."""

    crashes: int = 2
    built_at_s: list[float] = field(default_factory=list)

    def build(
        self, instance: EngineInstance, policy: InstancePolicy, supported_mhz: tuple[int, ...]
    ) -> ScriptedBrain | None:
        self.built_at_s.append(monotonic())
        brain = super().build(instance, policy, supported_mhz)
        if brain is not None and len(self.built_at_s) <= self.crashes:
            seen = brain.seen

            def decide(observation: Observation) -> tuple[DecisionReason, int | None]:
                seen.append(observation)
                if len(seen) > 3:
                    raise RuntimeError("policy bug")
                return DecisionReason.SLO_FIT, 1005

            def reset() -> None:
                raise RuntimeError("reset bug")

            brain.decide = decide  # type: ignore[method-assign]
            brain.reset = reset  # type: ignore[method-assign]
        return brain


def _rig(tmp_path: Path) -> tuple[SimulatedBackend, ClockActuator]:
    SimGpuDir.create(tmp_path / "gpus", [SimGpuSpec(u, "sim", CLOCKS, 0.0, 75.0) for u in ("GPU-a", "GPU-b")])
    backend = SimulatedBackend(tmp_path / "gpus")
    return backend, ClockActuator(backend, StateFile(tmp_path / "state.json"))


async def test_a_crashed_loop_is_released_restarted_with_backoff_and_shown_in_readyz(
    tmp_path: Path, server: MetricsServer
) -> None:
    backend, actuator = _rig(tmp_path)
    brains, scraper, metrics, health = CrashingBrains(), Scraper(0.1), AgentMetrics(), Health()
    health.ready = True

    def make(instance: EngineInstance, policy: InstancePolicy) -> InstanceLoop:
        return InstanceLoop(
            instance,
            policy,
            fetch=scraper.fetch,
            actuator=actuator,
            brains=brains,
            metrics=metrics,
            settings=LoopSettings(scrape_hz=50.0),
            clock=monotonic,
        )

    supervisor = Supervisor(
        make,
        release=actuator.release,
        metrics=metrics,
        health=health,
        backoff=RestartBackoff(first_s=0.3, max_s=5.0),
    )
    instance = EngineInstance("ns", "d0", "decode", "vllm", server.url, ("GPU-a",), service="chat")
    await supervisor.reconcile({instance.key: (instance, POLICY)})
    await settle(lambda: supervisor.states()[instance.key] == "crash_backoff")
    assert backend.locked_mhz("GPU-a") is None
    ready, text = health.status()
    assert not ready
    assert "crashing ns/d0: RuntimeError: reset bug" in text
    assert (
        metrics.registry.get_sample_value("joulescale_engine_instances_by_state", {"state": "crash_backoff"})
        == 1
    )

    await settle(lambda: len(brains.built_at_s) == 3, timeout_s=5.0)
    await settle(lambda: backend.locked_mhz("GPU-a") == 1005)
    assert supervisor.states()[instance.key] == "controlled"
    assert health.status()[0]
    first_gap_s, second_gap_s = (
        b - a for a, b in zip(brains.built_at_s, brains.built_at_s[1:], strict=False)
    )
    assert first_gap_s >= 0.3
    assert second_gap_s >= 0.6, "the delay doubles after each crash"
    labels = {"namespace": "ns", "service": "chat", "pod": "d0", "role": "decode"}
    assert metrics.registry.get_sample_value("joulescale_instance_restarts_total", labels) == 2
    await supervisor.stop_all()
    assert backend.locked_mhz("GPU-a") is None
    await scraper.close()


class DyingDiscovery:
    """Yields one instance, then fails when told to (a watch thread that died)."""

    def __init__(self, desired: Desired) -> None:
        self.desired = desired
        self.die = asyncio.Event()

    async def updates(self) -> AsyncIterator[Desired]:
        yield self.desired
        await self.die.wait()
        raise RuntimeError("watch died")


async def test_discovery_dying_resets_every_clock_and_exits_non_zero(
    tmp_path: Path, server: MetricsServer
) -> None:
    backend, _ = _rig(tmp_path)
    instance = EngineInstance("ns", "d0", "decode", "vllm", server.url, ("GPU-a", "GPU-b"))
    discovery = DyingDiscovery({instance.key: (instance, POLICY)})
    agent = Agent(
        backend=backend,
        state=StateFile(tmp_path / "state.json"),
        discovery=discovery,
        brains=ScriptedBrains(),
        settings=LoopSettings(scrape_hz=50.0),
        clock=monotonic,
    )
    run = asyncio.create_task(agent.run(asyncio.Event()))
    await settle(lambda: [backend.locked_mhz(g) for g in ("GPU-a", "GPU-b")] == [1005, 1005])
    discovery.die.set()
    assert await asyncio.wait_for(run, 5) == EXIT_DISCOVERY_FAILED != 0
    assert [backend.locked_mhz(g) for g in ("GPU-a", "GPU-b")] == [None, None]
    assert not agent.health.status()[0]


class OneShotDiscovery:
    def __init__(self, desired: Desired) -> None:
        self.desired = desired

    async def updates(self) -> AsyncIterator[Desired]:
        yield self.desired
        await asyncio.Event().wait()


async def test_a_clock_that_cannot_be_reset_at_shutdown_skips_no_other_and_exits_non_zero(
    tmp_path: Path, server: MetricsServer
) -> None:
    fake = FakeNvml([FakeDevice(f"GPU-{i}") for i in range(4)])
    instance = EngineInstance("ns", "d0", "decode", "vllm", server.url, tuple(d.uuid for d in fake.devices))
    agent = Agent(
        backend=NvmlBackend(fake),
        state=StateFile(tmp_path / "state.json"),
        discovery=OneShotDiscovery({instance.key: (instance, POLICY)}),
        brains=ScriptedBrains(),
        settings=LoopSettings(scrape_hz=50.0),
        clock=monotonic,
    )
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await settle(lambda: [d.locked_mhz for d in fake.devices] == [1005] * 4)
    fake.device_failures[("nvmlDeviceResetGpuLockedClocks", 1)] = OSError("EIO from the driver")
    stop.set()
    assert await asyncio.wait_for(run, 5) == EXIT_DISCOVERY_FAILED
    assert [d.locked_mhz for d in fake.devices] == [1005 if i == 1 else None for i in range(4)]
    assert StateFile(tmp_path / "state.json").locked == {"GPU-1"}, "named for the next agent"
