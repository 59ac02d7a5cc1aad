"""`make cluster-up` / `make cluster-down`: the whole local cluster as a background service.

``up`` forks a supervisor that owns the control plane and writes the admin kubeconfig to
``<dir>/kubeconfig``; ``down`` signals the supervisor, which stops every component and
removes its files. The supervisor's pid is kept in ``<dir>/supervisor.pid``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from e2e.harness.controlplane import ControlPlane
from e2e.harness.processes import HarnessError, pid_alive

READY_MARK = "ready"
FAILED_MARK = "failed"


def _supervise(directory: Path) -> None:
    """Runs in the forked child: start, report readiness, wait for SIGTERM, stop."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    plane = ControlPlane(with_cluster=True, workdir=directory / "state")
    status = directory / "status"
    try:
        plane.start()
    except (HarnessError, OSError) as err:
        status.write_text(f"{FAILED_MARK}\n{err}\n")
        return
    (directory / "kubeconfig").write_text(plane.kubeconfig.read_text())
    (directory / "components.json").write_text(json.dumps({p.name: p.pid for p in plane.processes}))
    status.write_text(READY_MARK + "\n")
    while not stop.wait(1.0):
        if not all(proc.running() for proc in plane.processes):
            dead = [p.name for p in plane.processes if not p.running()]
            status.write_text(f"{FAILED_MARK}\ncomponent exited: {', '.join(dead)}\n")
            break
    plane.stop()
    import shutil

    shutil.rmtree(directory / "state", ignore_errors=True)
    (directory / "kubeconfig").unlink(missing_ok=True)
    (directory / "components.json").unlink(missing_ok=True)


def up(directory: Path, timeout_s: float) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    pid_file = directory / "supervisor.pid"
    if pid_file.exists() and pid_alive(int(pid_file.read_text())):
        print(
            f"cluster already running (pid {pid_file.read_text().strip()}); kubeconfig: {directory / 'kubeconfig'}"
        )
        return 0
    (directory / "status").unlink(missing_ok=True)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # supervisor
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        log = os.open(directory / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        try:
            _supervise(directory)
        finally:
            os._exit(0)
    pid_file.write_text(f"{pid}\n")
    while time.monotonic() - started < timeout_s:
        status = directory / "status"
        if status.exists():
            text = status.read_text()
            if text.startswith(READY_MARK):
                print(
                    f"cluster up in {time.monotonic() - started:.1f} s; kubeconfig: {directory / 'kubeconfig'}"
                )
                return 0
            if text.startswith(FAILED_MARK):
                print(f"cluster failed to start: {text}", file=sys.stderr)
                down(directory)
                return 1
        time.sleep(0.2)
    print(f"cluster not ready within {timeout_s:.0f} s; see {directory}/supervisor.log", file=sys.stderr)
    down(directory)
    return 1


def down(directory: Path, timeout_s: float = 60) -> int:
    pid_file = directory / "supervisor.pid"
    if not pid_file.exists():
        print("no cluster running")
        return 0
    pid = int(pid_file.read_text())
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    (directory / "status").unlink(missing_ok=True)
    print("cluster down")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.harness.cluster", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for readiness")
    args = parser.parse_args(argv)
    if args.action == "up":
        return up(args.dir.resolve(), args.timeout)
    return down(args.dir.resolve())


if __name__ == "__main__":
    raise SystemExit(main())
