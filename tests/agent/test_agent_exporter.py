"""The exporter: metric names with units, per GPU and pod, and the health endpoints."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from joulescale_agent.engines import parse_page
from joulescale_agent.exporter import AgentMetrics, Health, make_app
from tests.agent.fakes import site_port

GPU = ("GPU-a", "ns", "chat", "decode-0", "decode")


async def test_metrics_health_and_readiness_are_served() -> None:
    metrics, health = AgentMetrics(), Health()
    metrics.target_clock.labels(*GPU).set(1005)
    metrics.set_energy(GPU, 12.5)
    metrics.decisions.labels("ns", "chat", "decode-0", "decode", "SloFit").inc()
    metrics.decision_time.labels("ns", "chat", "decode-0", "decode").observe(0.001)
    runner = web.AppRunner(make_app(metrics, health), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site_port(site)}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503
            health.ready = True
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200
            health.policy_errors = {"ns/decode-1": "ProfileError: unknown profile"}
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200, "one tenant's spec is not the agent's health"
                assert "policy error ns/decode-1: ProfileError" in await r.text()
            health.crashing = {"ns/decode-0": "RuntimeError: bug"}
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503
                assert "crashing ns/decode-0: RuntimeError: bug" in await r.text()
            health.crashing = {}
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/metrics") as r:
                page = parse_page(await r.text())
    finally:
        await runner.cleanup()
    labels = {"gpu": "GPU-a", "namespace": "ns", "service": "chat", "pod": "decode-0", "role": "decode"}
    assert page.series("joulescale_gpu_target_sm_clock_mhz") == [(labels, 1005.0)]
    assert page.series("joulescale_gpu_energy_joules_total") == [(labels, 12.5)]
    assert page.total("joulescale_decisions_total", {"reason": "SloFit"}) == 1
    assert page.total("joulescale_read_only") == 0
    assert page.total("joulescale_decision_seconds_count", {"service": "chat"}) == 1
    assert "_created" not in metrics.render().decode(), "no _created series: nothing reads them"
    metrics.forget_gpu(GPU)
    assert b"GPU-a" not in metrics.render()
