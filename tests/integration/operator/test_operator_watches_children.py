"""Changes of the Deployments a service owns reach it at once, not at the next resync.

The operator here resyncs once an hour, so only its watch on the Deployments it manages can
explain a reaction within seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import (
    OperatorProcess,
    apply,
    condition,
    get,
    mark_deployment_ready,
    service_manifest,
)
from tests.integration.operator.operators import running_operator, wait_children

pytestmark = pytest.mark.integration

HOUR_S = 3600.0
REACTION_S = 20.0


@pytest.fixture(scope="module")
def watching_operator(crd_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    yield from running_operator(crd_plane, tmp_path_factory, HOUR_S)


def test_a_deployment_turning_ready_reaches_the_status_without_the_resync(
    crd_plane: ControlPlane, watching_operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("watch-ready")
    apply(crd_plane, service_manifest("svc", namespace))
    deployments = wait_children(crd_plane, namespace, "svc", kinds=("deployment",))
    not_ready = crd_plane.wait_for(lambda: condition(get(crd_plane, "eals", "svc", namespace), "Ready"), timeout_s=30)
    assert not_ready["status"] == "False"
    for deployment in deployments.values():
        mark_deployment_ready(crd_plane, deployment)

    def ready() -> dict[str, Any] | None:
        found = condition(get(crd_plane, "eals", "svc", namespace), "Ready")
        return found if found and found["status"] == "True" else None

    crd_plane.wait_for(ready, timeout_s=REACTION_S)


def test_a_deleted_deployment_is_recreated_without_the_resync(
    crd_plane: ControlPlane, watching_operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("watch-drift")
    apply(crd_plane, service_manifest("svc", namespace))
    deployments = wait_children(crd_plane, namespace, "svc", kinds=("deployment",))
    crd_plane.kubectl("delete", "deployment", "svc-decode", "-n", namespace)

    def recreated() -> dict[str, Any] | None:
        found = get(crd_plane, "deployment", "svc-decode", namespace)
        return found if found and found["metadata"]["uid"] != deployments["deployment/svc-decode"]["metadata"]["uid"] else None

    crd_plane.wait_for(recreated, timeout_s=REACTION_S)


def test_a_child_of_a_deleted_service_is_not_brought_back(
    crd_plane: ControlPlane, watching_operator: OperatorProcess
) -> None:
    """The service's DELETED event drops it, so the children's deletions do not resurrect them
    (the apiserver has no garbage collector here, so the test deletes them as it would)."""
    namespace = crd_plane.create_namespace("watch-gone")
    apply(crd_plane, service_manifest("svc", namespace))
    wait_children(crd_plane, namespace, "svc", kinds=("deployment",))
    crd_plane.kubectl("delete", "eals", "svc", "-n", namespace)
    crd_plane.wait_for(lambda: get(crd_plane, "eals", "svc", namespace) is None, timeout_s=30)
    time.sleep(1.0)  # the operator's watch delivers the DELETED event asynchronously
    crd_plane.kubectl("delete", "deployment", "svc-decode", "-n", namespace)
    # Long enough for the watch to have reacted (it does in well under a second above).
    with pytest.raises(TimeoutError):
        crd_plane.wait_for(lambda: get(crd_plane, "deployment", "svc-decode", namespace), timeout_s=5)
