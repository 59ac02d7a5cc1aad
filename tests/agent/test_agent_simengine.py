"""The simulated engine: OpenAI completions (streaming and not), a /metrics page the agent's
vLLM adapter reads, and iteration timing that follows the clock of its simulated GPU."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from e2e.simengine.core import SimEngine
from e2e.simengine.server import make_app
from joulescale.engines.dialects import SGLANG, VLLM, EngineDialect
from joulescale.engines.observation import Phase
from joulescale.profiles import load_profile, physics
from joulescale.profiles.settle import plan_work
from joulescale_agent.engines import adapter_for, parse_page
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile
from joulescale_agent.gpu.simulated import SimulatedBackend
from tests.agent.fakes import site_port

PROFILE = load_profile("h100-sxm-llama-8b-tp1")


class Engine:
    def __init__(self, engine: SimEngine, url: str, gpus: SimulatedBackend) -> None:
        self.engine, self.url, self.gpus = engine, url, gpus


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, role: Phase, dialect: EngineDialect = VLLM) -> AsyncIterator[Engine]:
    SimGpuDir.create(tmp_path, specs_from_profile(PROFILE, ["GPU-0"]))
    engine = SimEngine(role, PROFILE, SimGpuDir(tmp_path), ["GPU-0"], dialect)
    runner = web.AppRunner(make_app(engine, "m"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site_port(site)
    task = asyncio.create_task(engine.run())
    try:
        yield Engine(engine, f"http://127.0.0.1:{port}", SimulatedBackend(tmp_path))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()


async def test_non_streaming_completion_returns_all_tokens_and_engine_timing(tmp_path: Path) -> None:
    async with (
        serve(tmp_path, "decode") as eng,
        aiohttp.ClientSession() as http,
        http.post(f"{eng.url}/v1/completions", json={"prompt": [1] * 500, "max_tokens": 5}) as r,
    ):
        body = await r.json()
    assert body["object"] == "text_completion"
    assert body["usage"] == {"prompt_tokens": 500, "completion_tokens": 5, "total_tokens": 505}
    expected_s = physics.decode_latency_s(PROFILE, 1, 502, 1980)
    assert body["sim_timing"]["tpot_s"] == pytest.approx(expected_s, rel=0.2)


async def test_streaming_completion_sends_one_event_per_token_then_done(tmp_path: Path) -> None:
    async with (
        serve(tmp_path, "decode") as eng,
        aiohttp.ClientSession() as http,
        http.post(
            f"{eng.url}/v1/completions", json={"prompt": "a b c", "max_tokens": 4, "stream": True}
        ) as r,
    ):
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = [line[6:] for line in (await r.text()).split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 4
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "length"]


async def test_metrics_page_is_read_by_the_agents_vllm_adapter(tmp_path: Path) -> None:
    async with serve(tmp_path, "prefill") as eng, aiohttp.ClientSession() as http:
        async with http.post(f"{eng.url}/v1/completions", json={"prompt": [1] * 300, "max_tokens": 1}) as r:
            assert r.status == 200
        async with http.get(f"{eng.url}/metrics") as r:
            sample = adapter_for("vllm").sample(parse_page(await r.text()))
    assert sample.prompt_tokens_total == 300
    assert sample.generation_tokens_total == 1
    assert sample.iterations_total == 1
    assert sample.kv_capacity_tokens == PROFILE.kv_capacity_tokens // 16 * 16
    assert sample.ttft is not None
    assert sample.ttft.count == 1


async def test_with_engine_sglang_the_page_is_read_by_the_agents_sglang_adapter(tmp_path: Path) -> None:
    """SGLang's names and labels; its token counters grow when a request finishes and its decode
    gauges are published every decode_log_interval steps, as the core recorder rules."""
    async with serve(tmp_path, "decode", SGLANG) as eng, aiohttp.ClientSession() as http:
        async with http.post(f"{eng.url}/v1/completions", json={"prompt": [1] * 300, "max_tokens": 4}) as r:
            assert r.status == 200
        async with http.get(f"{eng.url}/metrics") as r:
            text = await r.text()
    assert 'sglang:num_running_reqs{engine_type="unified",model_name="m",pp_rank="0",tp_rank="0"}' in text
    assert "vllm:" not in text
    sample = adapter_for("sglang").sample(parse_page(text))
    assert sample.generation_tokens_total == 4
    assert sample.prompt_tokens_total == 300
    assert sample.iterations_total is None  # SGLang has no iteration-tokens histogram
    assert sample.inter_token_latency is not None
    assert sample.inter_token_latency.count == 3  # the first decode token follows no token here


async def test_an_sglang_prefill_page_carries_its_queue_times_and_retractions_to_the_adapter(
    tmp_path: Path,
) -> None:
    """The names the agent's SGLang adapter reads: the scheduler's queue-time histogram (booked as
    a request enters a batch) and the retraction counter (not the gauge of the latest ones)."""
    async with serve(tmp_path, "prefill", SGLANG) as eng, aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(f"{eng.url}/v1/completions", json={"prompt": [1] * 500, "max_tokens": 1}) as r:
                assert r.status == 200
        async with http.get(f"{eng.url}/metrics") as r:
            text = await r.text()
    sample = adapter_for("sglang").sample(parse_page(text))
    assert sample.queue_time is not None
    assert sample.queue_time.count == 2
    assert sample.preemptions_total == 0


async def test_a_lower_clock_set_through_the_gpu_backend_slows_the_iterations(tmp_path: Path) -> None:
    prompt = [1] * 4000
    async with serve(tmp_path, "prefill") as eng, aiohttp.ClientSession() as http:

        async def ttft_s() -> float:
            async with http.post(f"{eng.url}/v1/completions", json={"prompt": prompt, "max_tokens": 1}) as r:
                return float((await r.json())["sim_timing"]["ttft_s"])

        fast = await ttft_s()
        eng.gpus.lock_sm_clock("GPU-0", 990, 990)
        await asyncio.sleep(PROFILE.clock_settle_ms / 1000 + 0.02)
        slow = await ttft_s()
        energy_mj = eng.gpus.energy_mj("GPU-0")
    assert fast == pytest.approx(physics.prefill_latency_s(PROFILE, [4000], 1980), rel=0.2)
    assert slow == pytest.approx(physics.prefill_latency_s(PROFILE, [4000], 990), rel=0.2)
    assert energy_mj > 0


async def test_bad_requests_are_rejected(tmp_path: Path) -> None:
    async with serve(tmp_path, "decode") as eng, aiohttp.ClientSession() as http:
        async with http.post(f"{eng.url}/v1/completions", data=b"{not json") as r:
            assert r.status == 400
        async with http.post(f"{eng.url}/v1/completions", json={"prompt": {"x": 1}}) as r:
            assert r.status == 400


async def test_a_clock_that_settles_during_an_iteration_slows_the_work_left(tmp_path: Path) -> None:
    """The twin's rule (joulescale.profiles.settle): the work left when the new clock is in force
    runs at it, so an iteration that is already running ends later."""
    prompt = [1] * 8000
    settle_s = PROFILE.clock_settle_ms / 1000

    def latency_s(mhz: int) -> float:
        return physics.prefill_latency_s(PROFILE, [8000], mhz)

    async with serve(tmp_path, "prefill") as eng, aiohttp.ClientSession() as http:

        async def lock_soon() -> None:
            await asyncio.sleep(0.05)
            eng.gpus.lock_sm_clock("GPU-0", 990, 990)

        locker = asyncio.create_task(lock_soon())
        async with http.post(f"{eng.url}/v1/completions", json={"prompt": prompt, "max_tokens": 1}) as r:
            ttft_s = float((await r.json())["sim_timing"]["ttft_s"])
        await locker
    assert eng.engine.iterations == 1
    expected = plan_work(0.0, 1.0, 1980, 990, 0.05 + settle_s, latency_s)
    assert latency_s(1980) * 1.1 < expected.end_s < latency_s(990) * 0.9  # the check can tell them apart
    assert ttft_s == pytest.approx(expected.end_s, abs=0.02)
