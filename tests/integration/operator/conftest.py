"""The operator, run as a subprocess against the session's real kube-apiserver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale.api.crd import render_crd_yaml
from joulescale_operator.testing import OperatorProcess
from tests.integration.operator.operators import running_operator

RESYNC_INTERVAL_S = 1.5
"""Short, so that a test sees a few drift corrections (and proves they write nothing) in seconds."""


def install_crd(plane: ControlPlane) -> None:
    plane.kubectl("apply", "--server-side", "-f", "-", input=render_crd_yaml())

    def established() -> bool:
        # `kubectl wait` fails instead of waiting while a new CRD has no conditions yet.
        wait = (
            "wait",
            "--for=condition=Established",
            "--timeout=5s",
            "crd/energyawarellmservices.joulescale.io",
        )
        return plane.kubectl(*wait, check=False).returncode == 0

    plane.wait_for(established, timeout_s=60)


@pytest.fixture(scope="session")
def crd_plane(apiserver: ControlPlane) -> ControlPlane:
    install_crd(apiserver)
    return apiserver


@pytest.fixture(scope="module")
def operator(crd_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    yield from running_operator(crd_plane, tmp_path_factory, RESYNC_INTERVAL_S)
