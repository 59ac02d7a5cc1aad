"""The operator subprocess that the module fixtures of this tier run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import OperatorProcess


def running_operator(
    plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, resync_interval_s: float
) -> Iterator[OperatorProcess]:
    """An operator subprocess for the length of a fixture, logging into the test's temp dir."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(plane.kubeconfig, log, resync_interval_s=resync_interval_s)
    process.start()
    try:
        yield process
    finally:
        process.stop()
