"""The router as a real process in front of two simulated engines (the repository's simengine):
what a client sends through it is prefilled with one token on one, decoded on the other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from e2e.harness.agentprocs import free_port
from e2e.simengine.core import SimEngine
from e2e.simengine.server import make_app
from joulescale.engines.dialects import VLLM
from joulescale.engines.observation import Phase
from joulescale.profiles import load_profile
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile
from tests.agent.fakes import site_port

PROFILE = load_profile("h100-sxm-llama-8b-tp1")


@contextlib.asynccontextmanager
async def engine(tmp_path: Path, role: Phase) -> AsyncIterator[tuple[SimEngine, int]]:
    sim_dir = tmp_path / role
    SimGpuDir.create(sim_dir, specs_from_profile(PROFILE, ["GPU-0"]))
    sim = SimEngine(role, PROFILE, SimGpuDir(sim_dir), ["GPU-0"], VLLM)
    runner = web.AppRunner(make_app(sim, "m"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    task = asyncio.create_task(sim.run())
    try:
        yield sim, site_port(site)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()


@contextlib.contextmanager
def router(prefill_port: int, decode_port: int, log: Path) -> Iterator[str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "joulescale_router.main", "--host", "127.0.0.1", "--port", str(port),
        "--prefiller-hosts", "127.0.0.1", "--prefiller-ports", str(prefill_port),
        "--decoder-hosts", "127.0.0.1", "--decoder-ports", str(decode_port),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{url}/health") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the router did not come up")
            await asyncio.sleep(0.1)


async def test_completions_through_the_router_process_use_both_engines(tmp_path: Path) -> None:
    async with engine(tmp_path, "prefill") as (prefill, p_port), engine(tmp_path, "decode") as (decode, d_port):
        with router(p_port, d_port, tmp_path / "router.log") as url:
            await _wait_healthy(url)
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{url}/v1/completions", json={"prompt": [1] * 300, "max_tokens": 6}
                ) as answer:
                    assert answer.status == 200
                    body = await answer.json()
                assert body["usage"]["completion_tokens"] == 6
                async with http.post(
                    f"{url}/v1/completions", json={"prompt": [1] * 300, "max_tokens": 4, "stream": True}
                ) as answer:
                    assert answer.content_type == "text/event-stream"
                    events = [line for line in (await answer.text()).split("\n\n") if line]
                assert events[-1] == "data: [DONE]"
                assert len([json.loads(e.removeprefix("data: ")) for e in events[:-1]]) == 4
    assert prefill.iterations >= 2  # one prefill pass per request
    assert decode.iterations >= 4
