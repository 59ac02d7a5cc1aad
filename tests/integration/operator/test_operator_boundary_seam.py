"""The error boundary through its seam: a renderer that raises for one service, with the
resync and the real client against the real kube-apiserver (no malformed object needed, so
this holds whatever the schema comes to reject)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client import ApiClient

from e2e.harness.controlplane import ControlPlane
from joulescale.api import EnergyAwareLLMServiceSpec, PlanStatus
from joulescale_operator.connection import load_configuration
from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.kube import KubeCluster
from joulescale_operator.own_writes import OwnWrites
from joulescale_operator.render import render_children
from joulescale_operator.resync import Resync
from joulescale_operator.testing import apply, condition, get, service_manifest

pytestmark = pytest.mark.integration


class Events:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, str]] = []

    def warning(self, reason: str, message: str) -> None:
        self.warnings.append((reason, message))

    def normal(self, reason: str, message: str) -> None:
        pass


def failing_for(bad: str) -> Any:
    def render(
        identity: ServiceIdentity, spec: EnergyAwareLLMServiceSpec, plan: PlanStatus | None
    ) -> list[dict[str, Any]]:
        if identity.name == bad:
            raise ZeroDivisionError("a renderer bug")
        return render_children(identity, spec, plan)

    return render


def test_a_service_whose_rendering_raises_fails_alone(crd_plane: ControlPlane) -> None:
    namespace = crd_plane.create_namespace("seam")
    events = Events()
    cluster = OwnWrites(KubeCluster(ApiClient(load_configuration(crd_plane.kubeconfig))))
    resync = Resync(cluster, lambda body: events, lambda: datetime.now(UTC), render=failing_for("bad"))
    for name in ("bad", "good"):
        # TP1 on the H100: a shipped profile covers it, so no NoProfile warning joins the sink.
        prefill = {"replicas": 1, "tensorParallelSize": 1, "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}}
        apply(crd_plane, service_manifest(name, namespace, prefill=prefill))
        body = get(crd_plane, "eals", name, namespace)
        assert body is not None
        resync.observe("ADDED", body)

    assert resync.resync_once() == 2
    ready = condition(get(crd_plane, "eals", "bad", namespace), "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "RenderFailed")
    assert "ZeroDivisionError: a renderer bug" in ready["message"]
    assert events.warnings == [("RenderFailed", ready["message"])]
    assert get(crd_plane, "deployment", "bad-decode", namespace) is None
    assert get(crd_plane, "service", "bad-decode", namespace) is None

    crd_plane.kubectl("delete", "service,deployment", "good-decode", "-n", namespace)
    resync.resync_once()
    assert get(crd_plane, "service", "good-decode", namespace) is not None
    assert get(crd_plane, "deployment", "good-decode", namespace) is not None
