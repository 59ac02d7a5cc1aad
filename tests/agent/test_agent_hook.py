"""The loop with an engine hook: the rich view from the pod's socket, the fallback, hostile writers.

Real parts: the hook's publisher and receiver (Unix datagrams), a real metrics server on
loopback, the simulated GPUs; the brain is scripted and records what it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from joulescale.engines.hook import IDLE_AFTER_S
from joulescale_agent.clock import monotonic
from joulescale_agent.control.instance import EngineInstance, LoopSettings
from joulescale_agent.control.loop import InstanceLoop
from joulescale_agent.engines.scrape import Scraper
from joulescale_agent.exporter import AgentMetrics
from joulescale_agent.gpu.simstate import SimGpuDir, SimGpuSpec
from joulescale_agent.gpu.simulated import SimulatedBackend
from joulescale_agent.safety.actuator import ClockActuator
from joulescale_agent.safety.statefile import StateFile
from joulescale_hook.schema import HEADER, MAGIC, Engine, StepDone, StepScheduled, encode
from joulescale_hook.transport import HookPublisher, socket_path
from tests.agent.fakes import CLOCKS, SCRIPTED_POLICY, MetricsServer, ScriptedBrains
from tests.agent.fakes import eventually as wait_until

SETTINGS = LoopSettings(scrape_hz=50.0, scrape_timeout_s=0.1, stale_after_s=2.0, readback_after_s=0.03,
                        relock_backoff_s=0.2, hook_stale_after_s=0.2)


@pytest.fixture
def hook_dir() -> Iterator[Path]:
    """A short directory: a socket path must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="jsh", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Rig:
    def __init__(self, tmp_path: Path, hook_dir: Path, server: MetricsServer) -> None:
        specs = [SimGpuSpec(u, "sim", CLOCKS, settle_s=0.01, idle_watts=75.0) for u in ("GPU-a", "GPU-b")]
        SimGpuDir.create(tmp_path / "gpus", specs)
        self.backend = SimulatedBackend(tmp_path / "gpus")
        self.actuator = ClockActuator(self.backend, StateFile(tmp_path / "state.json"))
        self.metrics = AgentMetrics()
        self.brains = ScriptedBrains()
        self.scraper = Scraper(SETTINGS.scrape_timeout_s)
        self.hook_dir = hook_dir
        self.server = server

    def loop(self, pod: str, role: str, gpu: str, uid: str, base_clock_mhz: int | None = 1005) -> InstanceLoop:
        instance = EngineInstance("ns", pod, role, "vllm", self.server.url, (gpu,), uid=uid)  # type: ignore[arg-type]
        policy = replace(SCRIPTED_POLICY, base_clock_mhz=base_clock_mhz)
        return InstanceLoop(instance, policy, fetch=self.scraper.fetch, actuator=self.actuator, brains=self.brains,
                            metrics=self.metrics, settings=replace(SETTINGS, hook_dir=str(self.hook_dir)),
                            clock=monotonic)

    def view(self, pod: str, role: str, view: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            "joulescale_agent_view", {"namespace": "ns", "service": "", "pod": pod, "role": role, "view": view})

    def messages(self, pod: str, role: str, kind: str) -> float:
        return self.metrics.registry.get_sample_value(
            "joulescale_hook_messages_total", {"namespace": "ns", "service": "", "pod": pod, "role": role, "kind": kind}) or 0.0


@contextlib.asynccontextmanager
async def running(*loops: InstanceLoop) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def eventually(predicate: Callable[[], object], timeout_s: float = 3.0) -> None:
    await wait_until(predicate, timeout_s, poll_s=0.005)


def _ns() -> int:
    return int(monotonic() * 1e9)


def prefill_step(step_id: int) -> StepScheduled:
    now = _ns()
    return StepScheduled(engine=Engine.SIMULATED, step_id=step_id, t_ns=now, prefill_requests=2,
                         prefill_tokens=1500, decode_requests=0, decode_kv_tokens=0, waiting_requests=1,
                         prefill_prompt_tokens=(1000, 500), prefill_done_tokens=(0, 0),
                         prefill_step_tokens=(1000, 500), prefill_arrival_ns=(now - 30_000_000, now - 10_000_000),
                         waiting_prompt_tokens=(7000,), waiting_arrival_ns=(now - 5_000_000,))


async def test_the_hook_puts_the_instance_in_the_rich_view_and_back_when_it_falls_silent(
    tmp_path: Path, hook_dir: Path, server: MetricsServer
) -> None:
    rig = Rig(tmp_path, hook_dir, server)
    loop = rig.loop("prefill-0", "prefill", "GPU-a", "uid-a")
    brains = rig.brains
    async with running(loop):
        await eventually(lambda: brains.brains and brains.brains[0].seen)
        assert rig.view("prefill-0", "prefill", "metrics") == 1
        assert rig.view("prefill-0", "prefill", "rich") == 0
        assert all(o.queue is None for o in brains.brains[0].seen)
        publisher = HookPublisher(socket_path(str(hook_dir), "uid-a"))
        try:
            publisher.publish(prefill_step(1))
            assert publisher.flush()
            await eventually(lambda: rig.view("prefill-0", "prefill", "rich") == 1)
            assert rig.view("prefill-0", "prefill", "metrics") == 0
            await eventually(lambda: brains.brains[0].seen[-1].queue is not None)
            rich = brains.brains[0].seen[-1]
            assert rich.running_requests == 2
            assert rich.context_tokens == 1500
            assert rich.waiting_requests == 1
            assert [q.prompt_tokens for q in rich.queue or ()] == [1000, 500, 7000]
            assert rich.oldest_wait_s is not None
            assert 0.03 <= rich.oldest_wait_s < 1.0
            # The scrape keeps reading the page but does not decide while the hook speaks.
            seen = len(brains.brains[0].seen)
            await asyncio.sleep(0.1)  # five scrapes; the hook is not yet stale (0.2 s)
            assert len(brains.brains[0].seen) == seen
            # The step ends and nothing is scheduled after it: the idle decision follows.
            publisher.publish(StepDone(Engine.SIMULATED, 1, _ns(), 40_000_000))
            assert publisher.flush()
            await eventually(lambda: len(brains.brains[0].seen) > seen, timeout_s=IDLE_AFTER_S + 0.1)
            idle = brains.brains[0].seen[-1]
            assert idle.idle
            assert idle.iterations_delta == 1
            assert idle.last_iteration_s == pytest.approx(0.04)
            assert (idle.prompt_tokens_delta, idle.generation_tokens_delta) == (1500, 2)
            assert rig.messages("prefill-0", "prefill", "scheduled") == 1
            assert rig.messages("prefill-0", "prefill", "done") == 1
        finally:
            publisher.close()
        # Silent while the page shows four running requests: back to the metrics view.
        await eventually(lambda: rig.view("prefill-0", "prefill", "metrics") == 1)
        await eventually(lambda: brains.brains[0].seen[-1].queue is None)
    assert not Path(socket_path(str(hook_dir), "uid-a")).exists()
    await rig.scraper.close()


async def send(sender: socket.socket, path: str, data: bytes) -> None:
    """Send without blocking the event loop that reads the socket (a datagram socket's queue is
    short: a blocking send would wait for a reader that cannot run)."""
    while True:
        try:
            sender.sendto(data, path)
            return
        except BlockingIOError:
            await asyncio.sleep(0.001)


def _bad_datagrams() -> list[bytes]:
    good = encode(prefill_step(5))
    wrong_version = bytearray(good)
    wrong_version[2] = 99
    head = HEADER.pack(MAGIC, 1, 1, 3, 0, 0, 1, _ns())
    too_many = head + struct.pack("<IIIQIHHH", 2**31, 0, 0, 0, 0, 0, 0, 0)
    more_entries_than_total = encode(replace(prefill_step(6), prefill_requests=1))
    chunk_past_prompt = encode(replace(prefill_step(7), prefill_done_tokens=(900, 0)))
    negative_step = encode(StepDone(Engine.SIMULATED, 3, _ns(), 2**62))
    return [b"", b"GET /metrics HTTP/1.1\r\n", bytes(wrong_version), too_many, more_entries_than_total,
            chunk_past_prompt, negative_step, good[:-3], good + b"x", b"\x00" * 60_000]


async def test_hostile_datagrams_are_counted_and_never_steer_another_instances_gpus(
    tmp_path: Path, hook_dir: Path, server: MetricsServer
) -> None:
    """Each pod's socket feeds that pod's loop only; garbage on it is refused and counted."""
    rig = Rig(tmp_path, hook_dir, server)
    tenant = rig.loop("prefill-0", "prefill", "GPU-a", "uid-a", base_clock_mhz=1005)
    other = rig.loop("prefill-1", "prefill", "GPU-b", "uid-b", base_clock_mhz=None)  # holds: never locks
    async with running(tenant, other):
        await eventually(lambda: len(rig.brains.brains) == 2 and all(b.seen for b in rig.brains.brains))
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.setblocking(False)
        try:
            path = socket_path(str(hook_dir), "uid-a")
            bad = _bad_datagrams()
            for data in bad:
                await send(sender, path, data)
            await eventually(lambda: rig.messages("prefill-0", "prefill", "invalid") == len(bad))
            assert rig.view("prefill-0", "prefill", "metrics") == 1
            for step in range(1, 200):  # a flood of valid messages: decisions stay spaced
                await send(sender, path, encode(prefill_step(step)))
            await eventually(lambda: rig.messages("prefill-0", "prefill", "scheduled") == 199)
            # A second scheduler of the pod (another process, its own step ids) is not mixed in.
            await send(sender, path, encode(prefill_step(500), source=4242))
            await eventually(lambda: rig.messages("prefill-0", "prefill", "other_source") == 1)
        finally:
            sender.close()
        await eventually(lambda: rig.view("prefill-0", "prefill", "rich") == 1)
        tenant_brain, other_brain = rig.brains.brains
        assert any(o.queue is not None for o in tenant_brain.seen)
        assert len([o for o in tenant_brain.seen if o.queue is not None]) < 199
        assert all(o.queue is None for o in other_brain.seen)
        assert rig.view("prefill-1", "prefill", "metrics") == 1
        assert rig.messages("prefill-1", "prefill", "scheduled") == 0
        assert rig.backend.locked_mhz("GPU-a") == 1005
        assert rig.backend.locked_mhz("GPU-b") is None
    await rig.scraper.close()


async def test_without_a_pod_uid_or_hook_dir_the_instance_stays_in_the_metrics_view(
    tmp_path: Path, hook_dir: Path, server: MetricsServer
) -> None:
    rig = Rig(tmp_path, hook_dir, server)
    loop = rig.loop("decode-0", "decode", "GPU-a", "")
    assert loop.hook is None
    assert rig.view("decode-0", "decode", "metrics") == 1
    (hook_dir / "blocked" / "hook.sock").mkdir(parents=True)  # a directory where the socket should be: no crash
    blocked = rig.loop("decode-1", "decode", "GPU-b", "blocked")
    async with running(loop, blocked):
        await eventually(lambda: len(rig.brains.brains) == 2 and all(b.seen for b in rig.brains.brains))
        assert rig.view("decode-1", "decode", "metrics") == 1
        assert rig.view("decode-0", "decode", "metrics") == 1
    assert rig.view("decode-0", "decode", "metrics") is None  # the loop ended: its series went with it
    await rig.scraper.close()
