"""Stopping a control plane leaves no process and no file behind."""

from __future__ import annotations

import pytest

from e2e.harness.controlplane import ControlPlane
from e2e.harness.processes import pid_alive

pytestmark = pytest.mark.integration


def test_stop_kills_every_component_and_removes_the_workdir() -> None:
    plane = ControlPlane(with_cluster=False).start()
    pids = [proc.pid for proc in plane.processes]
    workdir = plane.workdir
    assert pids
    assert all(pid is not None and pid_alive(pid) for pid in pids)

    plane.stop()

    assert not any(pid is not None and pid_alive(pid) for pid in pids)
    assert not workdir.exists()


class _ApiserverThatNeverComes(ControlPlane):
    """A plane whose second component fails: the first must not outlive the failure."""

    started_pids: list[int]

    def _start_apiserver(self, etcd_url: str) -> None:
        self.started_pids = [p.pid for p in self.processes if p.pid is not None]
        raise RuntimeError("apiserver refused to start")


def test_a_failing_start_tears_down_what_it_had_started() -> None:
    plane = _ApiserverThatNeverComes(with_cluster=False)

    with pytest.raises(RuntimeError, match="refused"):
        plane.start()

    assert plane.started_pids, "etcd should have been running when the apiserver failed"
    assert not any(pid_alive(pid) for pid in plane.started_pids)
    assert not plane.workdir.exists()
