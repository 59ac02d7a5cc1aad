"""The safety contract with real processes: SIGTERM, kill -9 and restart, read-only mode, a full
state-file filesystem, two agents on one node, foreign state files, one tenant's bad policy,
and GPUs that cannot lock clocks."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from e2e.harness.agentprocs import (
    free_port,
    http_get,
    metric_value,
    start_agent,
    start_engine,
    wait_for,
    write_instances,
)
from joulescale.profiles import load_profile
from joulescale_agent.gpu.simstate import SimGpuDir, SimGpuSpec, specs_from_profile
from joulescale_agent.gpu.simulated import SimulatedBackend
from tests.agent.fullfs import FullableDir

PROFILE = "h100-sxm-llama-8b-tp1"
GPUS = ["GPU-p0", "GPU-p1"]
GRACE_S = 5.0
"""Far below the Kubernetes default of 30 s; the agent must be done well within it."""


class Node:
    def __init__(
        self,
        tmp_path: Path,
        *,
        allow_lock: bool = True,
        gpus: list[str] = GPUS,
        specs: list[SimGpuSpec] | None = None,
        state_file: Path | None = None,
    ) -> None:
        self.tmp = tmp_path
        self.sim_dir = tmp_path / "gpus"
        self.uuids = gpus if specs is None else [s.uuid for s in specs]
        if specs is None:
            specs = specs_from_profile(load_profile(PROFILE), gpus, allow_lock=allow_lock)
        SimGpuDir.create(self.sim_dir, specs)
        self.gpus = SimulatedBackend(self.sim_dir)
        self.state_file = state_file or tmp_path / "state" / "locked.json"
        self.instances = tmp_path / "instances.json"
        self.engine_port = free_port()
        self.agent_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start_engine(self) -> None:
        self.procs.append(
            start_engine("decode", self.engine_port, self.sim_dir, self.uuids, self.tmp / "engine.log")
        )
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.engine_port}/health")[0] == 200, 20, "engine up")

    def instance(self, pod: str, gpus: list[str], clock_mhz: int, **policy: object) -> dict[str, object]:
        return {
            "namespace": "ns",
            "pod": pod,
            "role": "decode",
            "engine": "vllm",
            "metrics_url": f"http://127.0.0.1:{self.engine_port}/metrics",
            "gpus": gpus,
            "policy": {
                "policy": "static",
                "profile": PROFILE,
                "slo": {"ttft_ms": 1000, "tpot_ms": 100},
                "base_clock_mhz": clock_mhz,
                **policy,
            },
        }

    def set_static_clock(self, clock_mhz: int) -> None:
        write_instances(self.instances, [self.instance("decode-0", self.uuids, clock_mhz)])

    def start_agent(self, port: int | None = None, log: str = "agent.log") -> subprocess.Popen[bytes]:
        agent = start_agent(
            self.sim_dir, self.state_file, self.instances, port or self.agent_port, self.tmp / log
        )
        self.procs.append(agent)
        return agent

    def ready(self) -> bool:
        return http_get(f"http://127.0.0.1:{self.agent_port}/readyz")[0] == 200

    def log(self, name: str = "agent.log") -> str:
        return (self.tmp / name).read_text(errors="replace")

    def locks(self) -> list[int | None]:
        return [self.gpus.locked_mhz(g) for g in self.uuids]

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


TP4 = ["GPU-t0", "GPU-t1", "GPU-t2", "GPU-t3"]


def test_with_the_state_filesystem_full_sigterm_resets_a_whole_tp4_group_and_a_restart_runs(
    tmp_path: Path,
) -> None:
    state_dir = FullableDir(tmp_path / "state")
    node = Node(tmp_path, gpus=TP4, state_file=state_dir.path / "locked.json")
    try:
        node.start_engine()
        node.set_static_clock(1005)
        agent = node.start_agent()
        wait_for(lambda: node.locks() == [1005] * 4, 20, "TP4 group locked")
        state_dir.fill()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=GRACE_S) == 0
        assert node.locks() == [None] * 4, "one unwritable state file must not skip the other GPUs"
        assert sorted(node.recorded()) == TP4, "the file could not shrink: a superset is safe"

        # Still full: the successor resets the recorded GPUs, stays up and controls the group again.
        agent = node.start_agent()
        wait_for(lambda: node.locks() == [1005] * 4, 20, "TP4 group locked again")
        wait_for(node.ready, 5, "ready")
        assert metric_value(node.agent_metrics(), "joulescale_state_file_ok") == 0
        assert agent.poll() is None
        assert "cannot write state file" in node.log()
        state_dir.free()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=GRACE_S) == 0
        assert node.locks() == [None] * 4
        assert node.recorded() == []
    finally:
        node.stop()
        state_dir.close()


def test_a_second_agent_on_the_same_state_file_refuses_to_start_and_touches_nothing(node: Node) -> None:
    node.start_engine()
    node.set_static_clock(1005)
    first = node.start_agent()
    wait_for(lambda: node.locks() == [1005, 1005], 20, "clocks locked")
    second = node.start_agent(port=free_port(), log="second.log")
    assert second.wait(timeout=20) == 3
    assert "in use by another agent" in node.log("second.log")
    assert node.locks() == [1005, 1005], "the refused agent must not reset the first one's locks"
    assert first.poll() is None
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=GRACE_S) == 0
    assert node.locks() == [None, None]


@pytest.mark.parametrize(
    "content", [b"[]", b'{"locked_gpus": [0, 1]}', b"[" * 200_000], ids=["list", "ints", "deep"]
)
def test_a_foreign_state_file_resets_every_gpu_at_start_up(node: Node, content: bytes) -> None:
    for gpu in GPUS:
        node.gpus.lock_sm_clock(gpu, 990, 990)
    node.state_file.parent.mkdir(parents=True)
    node.state_file.write_bytes(content)
    write_instances(node.instances, [])
    agent = node.start_agent()
    wait_for(lambda: node.locks() == [None, None], 20, "every GPU reset")
    wait_for(node.ready, 5, "ready")
    assert agent.poll() is None
    wait_for(lambda: node.recorded() == [], 5, "state file rewritten")


def test_one_instances_unbuildable_policy_leaves_it_unlocked_and_the_others_controlled(node: Node) -> None:
    node.start_engine()
    good, bad = node.instance("decode-1", ["GPU-p1"], 990), node.instance("decode-0", ["GPU-p0"], 1005)
    write_instances(node.instances, [bad, good])
    agent = node.start_agent()
    wait_for(lambda: node.locks() == [1005, 990], 20, "both locked")

    def errors_of(pod: str) -> float | None:
        return metric_value(node.agent_metrics(), "joulescale_instance_policy_errors_total", pod=pod)

    for n, hostile in enumerate(
        [{"bounds": {"min_mhz": 3000, "max_mhz": 5000}}, {"profile": "no-such-gpu-profile"}], start=1
    ):
        write_instances(node.instances, [node.instance("decode-0", ["GPU-p0"], 1005, **hostile), good])
        wait_for(lambda n=n: errors_of("decode-0") == n, 10, f"policy error {n} counted")  # type: ignore[misc]
        wait_for(lambda: node.locks() == [None, 990], 5, "only the bad instance released")
        assert agent.poll() is None, "one tenant's spec must not stop the agent"
        assert node.ready()
        assert "decode-0" in http_get(f"http://127.0.0.1:{node.agent_port}/readyz")[1]
    page = node.agent_metrics()
    assert metric_value(page, "joulescale_engine_instances_by_state", state="policy_error") == 1
    write_instances(
        node.instances, [node.instance("decode-0", ["GPU-p0"], 1005, profile="no-such-gpu-profile"), good]
    )
    time.sleep(1.0)  # discovery yields the same set again: no new error, no new log line
    assert errors_of("decode-0") == 2
    assert node.log().count("cannot control ns/decode-0") == 2
    write_instances(node.instances, [bad, good])
    wait_for(lambda: node.locks() == [1005, 990], 10, "a fixed policy is controlled again")
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=GRACE_S) == 0
    assert node.locks() == [None, None]


def test_mig_and_not_supported_gpus_go_read_only_alone_and_are_logged_once(tmp_path: Path) -> None:
    base = specs_from_profile(load_profile(PROFILE), ["GPU-ok", "GPU-mig", "GPU-nosup"])
    specs = [base[0], replace(base[1], mig_enabled=True), replace(base[2], lock_supported=False)]
    node = Node(tmp_path, specs=specs)
    try:
        node.start_engine()
        write_instances(
            node.instances, [node.instance(f"decode-{i}", [s.uuid], 1005) for i, s in enumerate(specs)]
        )
        node.start_agent()
        wait_for(lambda: node.locks() == [1005, None, None], 20, "only the capable GPU locked")
        time.sleep(2.0)  # 40 ticks per instance at 20 Hz
        page = node.agent_metrics()
        assert metric_value(page, "joulescale_gpu_read_only", gpu="GPU-mig") == 1
        assert metric_value(page, "joulescale_gpu_read_only", gpu="GPU-nosup") == 1
        assert metric_value(page, "joulescale_gpu_read_only", gpu="GPU-ok") is None
        assert metric_value(page, "joulescale_read_only") == 1
        lines = node.log().splitlines()
        for gpu in ("GPU-mig", "GPU-nosup"):  # "controlling ..." and the one read-only line
            assert sum(gpu in line for line in lines) == 2, lines[-40:]
        assert node.locks() == [1005, None, None]
    finally:
        node.stop()
