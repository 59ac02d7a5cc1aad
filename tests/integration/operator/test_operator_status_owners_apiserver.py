"""Two writers of one status against the real kube-apiserver: the reconciler (through the resync)
and the planner loop each keep to what they own, whatever copy of the service they computed from.

The stale reconcile of issue 16: the reconciler reconciles a copy of the service read before the
planner's last write, and must neither drop nor roll back the planner's Planned condition,
status.plan, status.energy and the roles' planned clocks. The mirror: a planner pass that read
the service before the reconciler's write must not undo it. And neither writer bumps the object
when it has nothing new to say (idle passes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from kubernetes.client import ApiClient

from e2e.harness.controlplane import ControlPlane
from joulescale.profiles import shipped_catalog
from joulescale_operator.connection import load_configuration
from joulescale_operator.kube import KubeCluster
from joulescale_operator.own_writes import OwnWrites
from joulescale_operator.planloop.daemon import PlannerLoop, StatusCluster
from joulescale_operator.planloop.loop import PlanPass
from joulescale_operator.planloop.opmetrics import OperatorMetrics
from joulescale_operator.render import ChildRef
from joulescale_operator.resync import Resync
from joulescale_operator.testing import apply, condition, get, mark_deployment_ready, service_manifest
from tests.unit.operator.conftest import RecordedEvents
from tests.unit.operator.test_planloop_pass import CHOICE, INTERVAL, CannedSource, SetPlanner, healthy_metrics

pytestmark = pytest.mark.integration

H100 = "NVIDIA-H100-80GB-HBM3"
NAME = "llama"
LATER_CHOICE = replace(CHOICE, replicas={"prefill": 4, "decode": 1}, base_clock_mhz={"prefill": 1500, "decode": 1100})
"""A second plan that differs from CHOICE in every field a stale copy could roll back."""


class ReadThenInterfere:
    """The real cluster, except that the first read runs `interfere` after the object was read:
    the caller holds a copy that is already older than what is stored."""

    def __init__(self, kube: KubeCluster) -> None:
        self._kube = kube
        self.interfere: Callable[[], None] | None = None
        self.reads = 0

    def get(self, ref: ChildRef) -> dict[str, Any] | None:
        self.reads += 1
        found = self._kube.get(ref)
        if self.interfere is not None:
            run, self.interfere = self.interfere, None
            run()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kube, name)


@dataclass
class Writers:
    plane: ControlPlane
    namespace: str
    resync: Resync
    planner: PlannerLoop
    chooser: SetPlanner
    source: CannedSource
    cluster: ReadThenInterfere

    def service(self) -> dict[str, Any]:
        found = get(self.plane, "eals", NAME, self.namespace)
        assert found is not None
        return found

    def reconcile_from(self, copy_of_service: dict[str, Any]) -> int:
        """One resync pass of the reconciler on that copy of the service (the watch's latest)."""
        self.resync.observe("MODIFIED", copy_of_service)
        return self.resync.resync_once()

    def plan(self) -> None:
        self.planner.plan_service((self.namespace, NAME))

    def mark_roles_ready(self) -> None:
        for role in ("prefill", "decode"):
            deployment = get(self.plane, "deployment", f"{NAME}-{role}", self.namespace)
            assert deployment is not None
            mark_deployment_ready(self.plane, deployment)


def writers(plane: ControlPlane, prefix: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Writers:
    namespace = plane.create_namespace(prefix)
    scaled = {"autoscaling": {"minReplicas": 1, "maxReplicas": 6}, "tensorParallelSize": 1, "gpu": {"products": [H100]}}
    apply(plane, service_manifest(NAME, namespace, prefill=scaled, decode=scaled,
                                  energy={"planner": {"intervalSeconds": INTERVAL}}))
    kube = KubeCluster(ApiClient(load_configuration(plane.kubeconfig)))
    resync = Resync(OwnWrites(kube), lambda body: RecordedEvents(), clock)
    source, chooser = CannedSource(healthy_metrics(namespace=namespace, name=NAME)), SetPlanner(CHOICE)
    cluster = ReadThenInterfere(kube)
    # The plan is not applied here: each test decides which copy the reconciler works from.
    planner = PlannerLoop(cast(StatusCluster, cluster), PlanPass(source, chooser, shipped_catalog()), resync.known,
                          lambda key, stored: None, lambda body: RecordedEvents(), clock, OperatorMetrics())
    found = get(plane, "eals", NAME, namespace)
    assert found is not None
    resync.observe("ADDED", found)
    return Writers(plane, namespace, resync, planner, chooser, source, cluster)


def state(service: dict[str, Any], type_: str) -> str | None:
    found = condition(service, type_)
    return None if found is None else str(found["status"])


def planner_part(service: dict[str, Any]) -> dict[str, Any]:
    status = service.get("status", {})
    return {
        "Planned": condition(service, "Planned"),
        "plan": status.get("plan"),
        "energy": status.get("energy"),
        "clocks": [(status.get(role) or {}).get("baseClockMHz") for role in ("prefill", "decode")],
    }


def test_a_reconcile_from_a_copy_older_than_the_plan_keeps_the_planners_status(crd_plane: ControlPlane) -> None:
    w = writers(crd_plane, "stale")
    w.plan()
    older = w.service()  # holds the first plan
    assert condition(older, "Planned") is not None
    w.chooser.choice = LATER_CHOICE
    w.plan()
    planned = w.service()
    assert planned["status"]["plan"]["prefillReplicas"] == 4
    assert planner_part(planned)["clocks"] == [1500, 1100]

    assert w.reconcile_from(older) == 1  # the reconciler's first status, computed from the older copy
    after = w.service()
    assert state(after, "Ready") == "False"  # no replica is ready yet
    assert state(after, "PrefillReady") == "False"
    assert after["status"]["endpoint"].startswith(f"{NAME}-decode.")
    assert planner_part(after) == planner_part(planned)

    w.mark_roles_ready()  # one more reconciler write from the same old copy: Ready turns True
    assert w.reconcile_from(older) == 1
    again = w.service()
    assert state(again, "Ready") == "True"
    assert planner_part(again) == planner_part(planned)


def test_a_plan_from_a_copy_older_than_the_reconcile_keeps_the_reconcilers_status(crd_plane: ControlPlane) -> None:
    w = writers(crd_plane, "mirror")
    assert w.reconcile_from(w.service()) == 1
    assert state(w.service(), "Ready") == "False"

    def reconcile_ready() -> None:
        w.mark_roles_ready()
        assert w.reconcile_from(w.service()) == 1

    w.cluster.interfere = reconcile_ready  # the planner's read predates this reconcile
    w.plan()
    assert w.cluster.reads == 2  # the apiserver refused the apply at the old resourceVersion: read again
    assert len(w.chooser.calls) == 1  # and only the status was computed again, not the plan
    after = w.service()
    assert state(after, "Ready") == "True"
    assert state(after, "Planned") == "True"
    assert after["status"]["plan"]["prefillReplicas"] == CHOICE.replicas["prefill"]
    assert after["status"]["prefill"]["readyReplicas"] == 1


def test_idle_passes_of_both_writers_leave_the_object_alone(crd_plane: ControlPlane) -> None:
    fixed = datetime.now(UTC)
    w = writers(crd_plane, "idle", clock=lambda: fixed)  # the planner's energy window stays put
    w.plan()
    assert w.reconcile_from(w.service()) == 1
    w.mark_roles_ready()
    assert w.reconcile_from(w.service()) == 1
    settled = w.service()["metadata"]["resourceVersion"]
    for _ in range(3):
        w.plan()
        assert w.reconcile_from(w.service()) == 0
    assert w.service()["metadata"]["resourceVersion"] == settled

    w.source.down = True  # Prometheus gone: Planned=False is written once, then nothing
    w.plan()
    down = w.service()
    assert (condition(down, "Planned") or {}).get("reason") == "PrometheusUnavailable"
    for _ in range(3):
        w.plan()
        assert w.reconcile_from(w.service()) == 0
    assert w.service()["metadata"]["resourceVersion"] == down["metadata"]["resourceVersion"]
    assert w.service()["status"]["plan"] == down["status"]["plan"]


def test_what_an_older_operator_wrote_goes_when_its_owner_no_longer_sends_it(crd_plane: ControlPlane) -> None:
    """Before the split, both writers merge-patched the status under the operator's field manager:
    a router's status and condition, and a role's clock, from then must still go when the router
    is off and when the plan has no clock for that role."""
    w = writers(crd_plane, "upgrade")
    router_ready = {"type": "RouterReady", "status": "True", "reason": "AllReplicasReady", "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}
    legacy = {"router": {"replicas": 1, "readyReplicas": 1, "readyOfDesired": "1/1"},
              "prefill": {"baseClockMHz": 1725}, "conditions": [router_ready]}
    crd_plane.kubectl("patch", "eals", NAME, "-n", w.namespace, "--subresource=status", "--type=merge",
                      "--field-manager=joulescale-operator", "-p", json.dumps({"status": legacy}))
    w.chooser.choice = replace(CHOICE, base_clock_mhz={"prefill": None, "decode": 1200})

    assert w.reconcile_from(w.service()) == 1  # the router is off
    w.plan()
    after = w.service()
    assert condition(after, "RouterReady") is None
    assert "router" not in after["status"]
    assert state(after, "Ready") == "False"
    assert "baseClockMHz" not in after["status"]["prefill"]
    assert after["status"]["prefill"]["replicas"] == 1
    assert after["status"]["decode"]["baseClockMHz"] == 1200
