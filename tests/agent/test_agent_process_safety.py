"""The safety contract with real processes: SIGTERM, kill -9 and restart, read-only mode."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from joulescale.profiles import load_profile
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile
from joulescale_agent.gpu.simulated import SimulatedBackend
from tests.agent.procs import (
    free_port,
    http_get,
    metric_value,
    start_agent,
    start_engine,
    wait_for,
    write_instances,
)

PROFILE = "h100-sxm-llama-8b-tp1"
GPUS = ["GPU-p0", "GPU-p1"]
GRACE_S = 5.0
"""Far below the Kubernetes default of 30 s; the agent must be done well within it."""


class Node:
    def __init__(self, tmp_path: Path, *, allow_lock: bool = True) -> None:
        self.tmp = tmp_path
        self.sim_dir = tmp_path / "gpus"
        SimGpuDir.create(self.sim_dir, specs_from_profile(load_profile(PROFILE), GPUS, allow_lock=allow_lock))
        self.gpus = SimulatedBackend(self.sim_dir)
        self.state_file = tmp_path / "state" / "locked.json"
        self.instances = tmp_path / "instances.json"
        self.engine_port = free_port()
        self.agent_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start_engine(self) -> None:
        self.procs.append(
            start_engine("decode", self.engine_port, self.sim_dir, GPUS, self.tmp / "engine.log")
        )
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.engine_port}/health")[0] == 200, 20, "engine up")

    def set_static_clock(self, clock_mhz: int) -> None:
        write_instances(
            self.instances,
            [
                {
                    "namespace": "ns",
                    "pod": "decode-0",
                    "role": "decode",
                    "engine": "vllm",
                    "metrics_url": f"http://127.0.0.1:{self.engine_port}/metrics",
                    "gpus": GPUS,
                    "policy": {
                        "policy": "static",
                        "profile": PROFILE,
                        "slo": {"ttft_ms": 1000, "tpot_ms": 100},
                        "base_clock_mhz": clock_mhz,
                    },
                }
            ],
        )

    def start_agent(self) -> subprocess.Popen[bytes]:
        agent = start_agent(
            self.sim_dir, self.state_file, self.instances, self.agent_port, self.tmp / "agent.log"
        )
        self.procs.append(agent)
        return agent

    def locks(self) -> list[int | None]:
        return [self.gpus.locked_mhz(g) for g in GPUS]

    def recorded(self) -> list[str]:
        return (
            list(json.loads(self.state_file.read_text())["locked_gpus"]) if self.state_file.exists() else []
        )

    def agent_metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.agent_port}/metrics")[1]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    yield n
    n.stop()


def test_sigterm_resets_every_locked_clock_within_the_grace_period(node: Node) -> None:
    node.start_engine()
    node.set_static_clock(1005)
    agent = node.start_agent()
    wait_for(lambda: node.locks() == [1005, 1005], 20, "clocks locked")
    assert sorted(node.recorded()) == GPUS
    wait_for(lambda: http_get(f"http://127.0.0.1:{node.agent_port}/readyz")[0] == 200, 5, "ready")
    assert http_get(f"http://127.0.0.1:{node.agent_port}/healthz")[0] == 200
    sent_s = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=GRACE_S) == 0
    assert time.monotonic() - sent_s < GRACE_S
    assert node.locks() == [None, None]
    assert node.recorded() == []


def test_after_kill_9_a_restarted_agent_resets_the_leftover_locks_first(node: Node) -> None:
    node.start_engine()
    node.set_static_clock(990)
    agent = node.start_agent()
    wait_for(lambda: node.locks() == [990, 990], 20, "clocks locked")
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=5)
    assert node.locks() == [990, 990], "a killed agent cannot reset; the state file must remember"
    assert sorted(node.recorded()) == GPUS
    write_instances(node.instances, [])  # the successor has nothing to control: only recovery acts
    node.start_agent()
    wait_for(lambda: node.locks() == [None, None], 20, "leftover locks reset")
    wait_for(lambda: node.recorded() == [], 5, "state file cleared")


def test_an_unreachable_engine_leaves_the_gpus_at_default_clocks(node: Node) -> None:
    node.start_engine()
    node.set_static_clock(1005)
    node.start_agent()
    wait_for(lambda: node.locks() == [1005, 1005], 20, "clocks locked")
    engine = node.procs[0]
    engine.send_signal(signal.SIGKILL)
    engine.wait(timeout=5)
    wait_for(lambda: node.locks() == [None, None], 10, "locks released after stale metrics")
    wait_for(
        lambda: metric_value(node.agent_metrics(), "joulescale_failsafe", pod="decode-0") == 1, 5, "failsafe"
    )


def test_without_permission_the_agent_runs_read_only_and_reports_it(tmp_path: Path) -> None:
    node = Node(tmp_path, allow_lock=False)
    try:
        node.start_engine()
        node.set_static_clock(1005)
        node.start_agent()
        wait_for(
            lambda: metric_value(node.agent_metrics(), "joulescale_read_only") == 1, 20, "read-only reported"
        )
        assert http_get(f"http://127.0.0.1:{node.agent_port}/healthz")[0] == 200
        assert node.locks() == [None, None]
        assert "running read-only" in (tmp_path / "agent.log").read_text()
    finally:
        node.stop()
