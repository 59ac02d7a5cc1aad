"""Real processes on loopback for the agent tests and e2e: the agent CLI and the simulated engine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_env() -> dict[str, str]:
    """The environment of the repo's processes: its packages on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "node_agent"), env.get("PYTHONPATH", "")])
    return env


def start_engine(
    role: str,
    port: int,
    sim_dir: Path,
    gpus: list[str],
    log: Path,
    profile: str = "h100-sxm-llama-8b-tp1",
    engine: str = "vllm",
    *extra: str,
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "e2e.simengine",
        "--role",
        role,
        "--port",
        str(port),
        "--sim-dir",
        str(sim_dir),
        "--gpus",
        ",".join(gpus),
        "--profile",
        profile,
        "--engine",
        engine,
        *extra,
    ]
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=REPO, env=agent_env(), stdout=out, stderr=subprocess.STDOUT)


def start_agent(
    sim_dir: Path, state_file: Path, instances: Path | None, port: int, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """The agent CLI on simulated GPUs: static discovery from ``instances``, or with None
    Kubernetes discovery (``extra`` then names --node-name, --kubeconfig and the kubelet socket)."""
    cmd = [
        sys.executable,
        "-m",
        "joulescale_agent.main",
        "--backend",
        "simulated",
        "--sim-dir",
        str(sim_dir),
        "--state-file",
        str(state_file),
        *(["--instances", str(instances)] if instances is not None else []),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=agent_env(), stdout=out, stderr=subprocess.STDOUT)


def http_get(url: str, timeout_s: float = 1.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def wait_for(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, ValueError) as error:
            last_error = error
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


def write_instances(path: Path, instances: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"instances": instances}))
    os.replace(tmp, path)


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """A sample's value from an exposition page (first match), for assertions."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None
