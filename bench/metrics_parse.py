"""Engine metrics parsing and agent CPU cost. Prints one JSON document.

- parse_ms: time to parse a ~40 KB vLLM V1 /metrics page and extract the engine sample
  (the agent's per-scrape work), over many repetitions: p50 and p99.
- agent_cpu_fraction_per_instance: CPU seconds per wall second of the agent's control loops
  at 20 Hz, divided by the number of instances. The loops run in this process (real HTTP
  scrapes of a 40 KB page served by a separate process, the core's joulescale policy, the
  simulated GPU backend); the page server's CPU is not counted.
- hostile_parse_ms: time to parse (or refuse) a hostile 4 MB page: the vLLM sample with one
  huge label in vllm:cache_config_info, the family read for the KV capacity (median of 5).
- loop_lag_ms: how late a 5 ms timer on the agent's event loop fires (max and p99) while one
  instance loop scrapes the normal page and while it scrapes the hostile page at 20 Hz: the
  time the event loop is blocked, for every other instance of the node.

Usage: .venv/bin/python bench/metrics_parse.py [--seconds 10] [--instances 4] [--lag-seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "node_agent")]

from joulescale.control.policy import Slo  # noqa: E402
from joulescale.profiles import load_profile  # noqa: E402
from joulescale_agent.clock import monotonic  # noqa: E402
from joulescale_agent.control.corebrain import CoreBrainFactory  # noqa: E402
from joulescale_agent.control.instance import EngineInstance, InstancePolicy, LoopSettings  # noqa: E402
from joulescale_agent.control.loop import InstanceLoop  # noqa: E402
from joulescale_agent.engines import adapter_for, parse_page  # noqa: E402
from joulescale_agent.engines.scrape import Scraper  # noqa: E402
from joulescale_agent.exporter import AgentMetrics  # noqa: E402
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile  # noqa: E402
from joulescale_agent.gpu.simulated import SimulatedBackend  # noqa: E402
from joulescale_agent.safety.actuator import ClockActuator  # noqa: E402
from joulescale_agent.safety.statefile import StateFile  # noqa: E402

# Serves one file at /metrics with HTTP keep-alive, as the engines' own servers do.
PAGE_SERVER = """
import sys
from aiohttp import web
body = open(sys.argv[1], "rb").read()
async def page(_):
    return web.Response(body=body, content_type="text/plain")
app = web.Application()
app.router.add_get("/metrics", page)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
"""
SAMPLE = REPO / "tests" / "fixtures" / "engine-metrics" / "vllm_v1_metrics_sample.prom"
PROFILE = "h100-sxm-llama-8b-tp1"


def page_text() -> str:
    """The shared vLLM V1 sample (42 KB) when present, else a page of the same shape and size."""
    if SAMPLE.exists():
        return SAMPLE.read_text()
    from e2e.simengine.metrics import render_vllm
    from joulescale.engines.dialects import VLLM
    from joulescale.engines.recorder import MetricsRecorder

    metrics = MetricsRecorder(VLLM, 431924)
    for i in range(2000):
        metrics.itl.observe(0.001 * (i % 90))
        metrics.ttft.observe(0.01 * (i % 300))
    text = render_vllm(metrics.sample(), "meta-llama/Llama-3.1-8B-Instruct")
    return text * max(1, 40_000 // len(text))


def hostile_text(text: str, size_bytes: int = 4_000_000) -> str:
    """The sample with one label of vllm:cache_config_info padded to make a page of ``size_bytes``."""
    at = text.index("vllm:cache_config_info{") + len("vllm:cache_config_info{")
    return text[:at] + 'junk="' + "x" * (size_bytes - len(text) - 8) + '",' + text[at:]


def parse_times_ms(text: str, repeats: int) -> list[float]:
    adapter = adapter_for("vllm")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with contextlib.suppress(Exception):  # a refused page counts with the time it took
            adapter.sample(parse_page(text))
        times.append((time.perf_counter() - start) * 1000.0)
    return times


async def loop_lag_ms(url: str, seconds: float, workdir: Path) -> dict[str, float]:
    """Lateness of a 5 ms timer while one instance loop scrapes ``url`` at 20 Hz."""
    profile = load_profile(PROFILE)
    SimGpuDir.create(workdir / "lag-gpus", specs_from_profile(profile, ["GPU-lag"]))
    actuator = ClockActuator(SimulatedBackend(workdir / "lag-gpus"), StateFile(workdir / "lag-state.json"))
    settings = LoopSettings(scrape_hz=20.0, scrape_timeout_s=2.0)
    scraper = Scraper(settings.scrape_timeout_s)
    loop = InstanceLoop(
        EngineInstance("bench", "decode-lag", "decode", "vllm", url, ("GPU-lag",)),
        InstancePolicy("joulescale", Slo(ttft_ms=600, tpot_ms=50), PROFILE),
        fetch=scraper.fetch,
        actuator=actuator,
        brains=CoreBrainFactory(),
        metrics=AgentMetrics(),
        settings=settings,
        clock=monotonic,
    )
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.5)
    lags = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        before = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append((time.perf_counter() - before - 0.005) * 1000.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await scraper.close()
    lags.sort()
    return {"max": round(lags[-1], 2), "p99": round(lags[int(0.99 * len(lags)) - 1], 2)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_loops(url: str, instances: int, seconds: float, workdir: Path) -> float:
    profile = load_profile(PROFILE)
    gpus = [f"GPU-{i}" for i in range(instances)]
    SimGpuDir.create(workdir / "gpus", specs_from_profile(profile, gpus))
    actuator = ClockActuator(SimulatedBackend(workdir / "gpus"), StateFile(workdir / "state.json"))
    settings = LoopSettings(scrape_hz=20.0)
    scraper = Scraper(settings.scrape_timeout_s)
    metrics = AgentMetrics()
    brains = CoreBrainFactory()
    policy = InstancePolicy("joulescale", Slo(ttft_ms=600, tpot_ms=50), PROFILE)
    loops = [
        InstanceLoop(
            EngineInstance("bench", f"decode-{i}", "decode", "vllm", url, (gpu,)),
            policy,
            fetch=scraper.fetch,
            actuator=actuator,
            brains=brains,
            metrics=metrics,
            settings=settings,
            clock=monotonic,
        )
        for i, gpu in enumerate(gpus)
    ]
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    await asyncio.sleep(1.0)  # warm-up: connections, first decisions
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await scraper.close()
    return cpu / wall / instances


@contextlib.contextmanager
def page_server(path: Path) -> Iterator[str]:
    """A separate process serving ``path`` at /metrics; yields its URL once it answers."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", PAGE_SERVER, str(path), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--instances", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2000)
    p.add_argument("--lag-seconds", type=float, default=3.0)
    args = p.parse_args()
    text = page_text()
    hostile = hostile_text(text)
    times = sorted(parse_times_ms(text, args.repeats))
    hostile_times = sorted(parse_times_ms(hostile, 5))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "www").mkdir()
        (workdir / "www" / "metrics").write_text(text)
        (workdir / "www" / "hostile").write_text(hostile)
        with page_server(workdir / "www" / "metrics") as url:
            cpu_fraction = asyncio.run(run_loops(url, args.instances, args.seconds, workdir))
            lag_normal = asyncio.run(loop_lag_ms(url, args.lag_seconds, workdir))
        with page_server(workdir / "www" / "hostile") as url:
            lag_hostile = asyncio.run(loop_lag_ms(url, args.lag_seconds, workdir))
    print(
        json.dumps(
            {
                "page_bytes": len(text.encode()),
                "parse_ms": {
                    "p50": round(statistics.median(times), 4),
                    "p99": round(times[int(0.99 * len(times)) - 1], 4),
                },
                "agent_cpu_fraction_per_instance": round(cpu_fraction, 4),
                "hostile_page_bytes": len(hostile.encode()),
                "hostile_parse_ms": round(statistics.median(hostile_times), 2),
                "loop_lag_ms": {"normal_page": lag_normal, "hostile_page": lag_hostile},
            }
        )
    )


if __name__ == "__main__":
    main()
