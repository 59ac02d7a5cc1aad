"""The harness's Prometheus is a real server: it scrapes a simulated engine on loopback with the
labels a test gives, follows target changes while running, and comes back after a stop."""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness.agentprocs import free_port, http_get, start_engine, wait_for
from e2e.harness.prometheus import PrometheusServer, ScrapeTarget
from joulescale.profiles import load_profile
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile

pytestmark = pytest.mark.integration

PROFILE = "h100-sxm-llama-8b-tp1"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[str]:
    sim_dir = tmp_path / "gpus"
    SimGpuDir.create(sim_dir, specs_from_profile(load_profile(PROFILE), ["GPU-0"]))
    port = free_port()
    proc = start_engine("decode", port, sim_dir, ["GPU-0"], tmp_path / "engine.log", PROFILE)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/health")[0] == 200, 30, "engine")
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def _series(prom: PrometheusServer, expr: str) -> list[dict[str, str]]:
    return [r["metric"] for r in prom.query(expr)]


def test_prometheus_scrapes_given_targets_with_their_labels(
    prometheus: PrometheusServer, engine: str
) -> None:
    labels = {"namespace": "demo", "service": "chat", "role": "decode"}
    prometheus.set_targets("engines", [ScrapeTarget(engine, labels)])
    prometheus.wait_scraped(engine, timeout_s=30, scrapes=2)

    found = _series(prometheus, 'vllm:num_requests_running{service="chat"}')
    assert len(found) == 1
    assert {k: found[0][k] for k in labels} == labels
    assert found[0]["instance"] == engine

    prometheus.set_targets("engines", [])  # file discovery drops it while the server runs
    wait_for(lambda: not prometheus.targets(), 15, "the target to be dropped", interval_s=0.2)


def test_prometheus_comes_back_on_the_same_url_with_its_data(
    prometheus: PrometheusServer, engine: str
) -> None:
    prometheus.set_targets("engines", [ScrapeTarget(engine, {"service": "chat"})])
    prometheus.wait_scraped(engine, timeout_s=30)
    url = prometheus.url

    prometheus.stop()
    assert not prometheus.running()
    with pytest.raises(urllib.error.URLError, match="refused"):
        http_get(f"{url}/-/ready")

    prometheus.start()
    assert prometheus.url == url
    prometheus.wait_scraped(engine, timeout_s=30, scrapes=3)
    assert _series(prometheus, 'up{service="chat"}')


def test_a_bad_query_says_why(prometheus: PrometheusServer) -> None:
    with pytest.raises(RuntimeError, match="parse error"):
        prometheus.query("sum(")


def test_prometheus_stops_for_sure(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path)
    with server:
        assert server.running()
        assert http_get(f"{server.url}/-/ready")[0] == 200
    assert not server.running()
    with pytest.raises(urllib.error.URLError, match="refused"):  # nothing answers on its port any more
        http_get(f"{server.url}/-/ready", timeout_s=0.5)
