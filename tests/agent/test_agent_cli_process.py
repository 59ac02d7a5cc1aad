"""Hostile command lines against the real agent process: exit status 2, one error line, no
traceback, in well under the time a kubelet would wait."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e.harness.agentprocs import REPO, agent_env, free_port
from joulescale.profiles import load_profile
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile


def _run(*argv: str) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "joulescale_agent.main", *argv],
        cwd=REPO,
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.fixture
def sim_dir(tmp_path: Path) -> Path:
    SimGpuDir.create(tmp_path / "gpus", specs_from_profile(load_profile("h100-sxm-llama-8b-tp1"), ["GPU-a"]))
    (tmp_path / "instances.json").write_text(json.dumps({"instances": []}))
    return tmp_path / "gpus"


def _agent_args(tmp_path: Path, sim_dir: Path, *extra: str) -> list[str]:
    return [
        "--backend",
        "simulated",
        "--sim-dir",
        str(sim_dir),
        "--state-file",
        str(tmp_path / "state" / "locked.json"),
        "--instances",
        str(tmp_path / "instances.json"),
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        *extra,
    ]


def test_hostile_command_lines_are_refused_by_the_real_process(tmp_path: Path, sim_dir: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "gpus.json").write_text('{"gpus": [{"uuid": 5}]}')
    endless = tmp_path / "endless"
    endless.mkdir()
    (endless / "gpus.json").symlink_to("/dev/zero")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    cases = [
        (_agent_args(tmp_path, sim_dir, "--scrape-hz", "nan"), "--scrape-hz"),
        (_agent_args(tmp_path, sim_dir, "--min-hold-s", "-1"), "--min-hold-s"),
        (_agent_args(tmp_path, tmp_path / "no-such-dir"), "--sim-dir"),
        (_agent_args(tmp_path, garbage), "--sim-dir"),
        (_agent_args(tmp_path, endless), "--sim-dir"),
        (_agent_args(tmp_path, sim_dir, "--host", "127.0.0.1\nFORGED"), "--host/--port"),
        (_agent_args(tmp_path, sim_dir, "--host", "256.0.0.1"), "--host/--port"),
        (_agent_args(tmp_path, sim_dir, "--port", str(busy.getsockname()[1])), "--host/--port"),
    ]
    try:
        for argv, named in cases:
            code, out, took_s = _run(*argv)
            assert code == 2, out
            assert "Traceback" not in out
            assert "\nFORGED" not in out, "an argument must not forge a log line"
            assert named in out
            assert len([line for line in out.splitlines() if "error" in line.lower()]) == 1, out
            assert took_s < 20
    finally:
        busy.close()
