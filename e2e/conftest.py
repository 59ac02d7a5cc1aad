"""Fixtures of the local-cluster tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale.api.crd import render_crd_yaml
from joulescale_operator.testing import OperatorProcess


@pytest.fixture(scope="module")
def cluster_operator(
    cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The CRD installed on the local cluster and the operator running against it as a host
    process (resync every second), for one test module."""
    cluster.kubectl("apply", "--server-side", "-f", "-", input=render_crd_yaml())
    cluster.wait_crd_established("energyawarellmservices.joulescale.io")
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with OperatorProcess(cluster.kubeconfig, log, resync_interval_s=1.0) as process:
        yield process
