"""An operator restart finds its services again: no duplicate child and no write."""

from __future__ import annotations

import json
import time

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import (
    OperatorProcess,
    apply,
    condition,
    get,
    managed_resource_versions,
    service_manifest,
)

pytestmark = pytest.mark.integration


def test_a_restarted_operator_neither_duplicates_nor_churns(
    crd_plane: ControlPlane, operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("restart")
    for name in ("one", "two"):
        apply(crd_plane, service_manifest(name, namespace))
    for name in ("one", "two"):
        crd_plane.wait_for(
            lambda name=name: condition(get(crd_plane, "eals", name, namespace), "Ready"), timeout_s=30
        )
    time.sleep(operator.resync_interval_s * 2)
    before = managed_resource_versions(crd_plane, namespace)
    operator.stop()
    operator.start()
    time.sleep(operator.resync_interval_s * 3)
    assert managed_resource_versions(crd_plane, namespace) == before
    deployments = json.loads(
        crd_plane.kubectl(
            "get", "deployments", "-n", namespace, "-l", "joulescale.io/service=one", "-o", "json"
        ).stdout
    )["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == ["one-decode", "one-prefill"]
