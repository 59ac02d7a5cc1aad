"""Who sets an autoscaled role's replicas, against the real kube-apiserver: the planner's field
manager, so that a reconcile from a copy of the service older than the newest plan never scales
a Deployment back (issue 16: each scale-down and back is pods deleted and model loads redone).
A watch records every spec.replicas the Deployments ever had. A person's fixed count still
applies at once, and the planner cannot take it back."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from kubernetes import watch
from kubernetes.client import ApiClient, AppsV1Api

from e2e.harness.controlplane import ControlPlane
from joulescale.profiles import shipped_catalog
from joulescale_operator.connection import load_configuration
from joulescale_operator.handlers import plan_applier
from joulescale_operator.kube import KubeCluster
from joulescale_operator.own_writes import OwnWrites
from joulescale_operator.planloop.daemon import PlannerLoop, StatusCluster
from joulescale_operator.planloop.loop import PlanPass
from joulescale_operator.planloop.opmetrics import OperatorMetrics
from joulescale_operator.planned_replicas import PlanNotApplied, apply_stored_plan
from joulescale_operator.reconcile import Reconciler
from joulescale_operator.render import ChildRef
from joulescale_operator.resync import Resync
from joulescale_operator.testing import apply, get, service_manifest
from tests.unit.operator.conftest import RecordedEvents
from tests.unit.operator.test_planloop_pass import CHOICE, INTERVAL, CannedSource, SetPlanner, healthy_metrics

pytestmark = pytest.mark.integration

H100 = "NVIDIA-H100-80GB-HBM3"
NAME = "llama"
PLANNER_MANAGER = "joulescale-operator-planner"
SMALL = replace(CHOICE, replicas={"prefill": 1, "decode": 1})
LARGE = replace(CHOICE, replicas={"prefill": 3, "decode": 2})


class ReplicaHistory:
    """Every (deployment, spec.replicas, generation) a watch of the namespace delivers, from the
    namespace's state when it was made (the watch starts at that resourceVersion: no gap)."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self._apps = AppsV1Api(api)
        self._namespace = namespace
        self._watch = watch.Watch()
        self._stopped = threading.Event()
        self.seen: list[tuple[str, int, int]] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        start = self._apps.list_namespaced_deployment(namespace).metadata.resource_version
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self._thread.start()

    def _run(self, start: str) -> None:
        try:
            for event in self._watch.stream(
                self._apps.list_namespaced_deployment, self._namespace, resource_version=start, timeout_seconds=120
            ):
                obj = event["object"]
                with self._lock:
                    self.seen.append((obj.metadata.name, obj.spec.replicas, obj.metadata.generation))
        except Exception as error:  # the connection closes under a stopped watch: not a finding
            if not self._stopped.is_set():
                self.error = error

    def values(self, role: str) -> list[int]:
        """The role's replicas in the order seen, a value repeated by a status-only change once."""
        with self._lock:
            counts = [count for name, count, _ in self.seen if name == f"{NAME}-{role}"]
        return [count for index, count in enumerate(counts) if index == 0 or counts[index - 1] != count]

    def settled(self, role: str, last: int, timeout_s: float = 10.0) -> list[int]:
        """The role's values once the watch has delivered ``last`` (events arrive a little later)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (not self.values(role) or self.values(role)[-1] != last):
            time.sleep(0.05)
        assert self.error is None, self.error
        return self.values(role)

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()


@dataclass
class Operator:
    """The reconciler (resync and a kopf-like handler call) and the planner loop of one operator,
    with the plan applied as the operator applies it (handlers.plan_applier)."""

    plane: ControlPlane
    namespace: str
    cluster: OwnWrites
    resync: Resync
    planner: PlannerLoop
    chooser: SetPlanner

    def service(self) -> dict[str, Any]:
        found = get(self.plane, "eals", NAME, self.namespace)
        assert found is not None
        return found

    def deployment(self, role: str) -> dict[str, Any]:
        found = get(self.plane, "deployment", f"{NAME}-{role}", self.namespace)
        assert found is not None
        return found

    def replica_owners(self, role: str) -> list[str]:
        """The field managers of the Deployment's spec.replicas (kubectl hides managedFields)."""
        found = self.cluster.get(ChildRef("apps/v1", "Deployment", self.namespace, f"{NAME}-{role}"))
        assert found is not None
        return [entry["manager"] for entry in found["metadata"]["managedFields"]
                if "f:replicas" in entry.get("fieldsV1", {}).get("f:spec", {})]

    def replicas(self, role: str) -> int:
        return int(self.deployment(role)["spec"]["replicas"])

    def reconcile_from(self, copy_of_service: dict[str, Any]) -> None:
        """A resync pass on that copy (the watch's latest), then kopf's handler on the same copy."""
        self.resync.observe("MODIFIED", copy_of_service)
        self.resync.resync_once()
        Reconciler(self.cluster, RecordedEvents(), lambda: datetime.now(UTC)).reconcile(copy_of_service)

    def plan(self, choice: Any) -> None:
        self.chooser.choice = choice
        self.planner.plan_service((self.namespace, NAME))

    def set_spec(self, prefill: dict[str, Any], decode: dict[str, Any]) -> None:
        apply(self.plane, service_manifest(NAME, self.namespace, prefill=prefill, decode=decode,
                                           energy={"planner": {"intervalSeconds": INTERVAL}}))


def role(replicas: int | None = None, low: int = 1, high: int = 6) -> dict[str, Any]:
    scaling: dict[str, Any] = (
        {"replicas": replicas} if replicas is not None else {"autoscaling": {"minReplicas": low, "maxReplicas": high}}
    )
    return {**scaling, "tensorParallelSize": 1, "gpu": {"products": [H100]}}


@pytest.fixture
def operator(crd_plane: ControlPlane, request: pytest.FixtureRequest) -> Operator:
    namespace = crd_plane.create_namespace(request.node.name[5:30].replace("_", "-"))
    kube = KubeCluster(ApiClient(load_configuration(crd_plane.kubeconfig)))
    cluster = OwnWrites(kube)
    resync = Resync(cluster, lambda body: RecordedEvents(), lambda: datetime.now(UTC))
    source, chooser = CannedSource(healthy_metrics(namespace=namespace, name=NAME)), SetPlanner(SMALL)
    planner = PlannerLoop(cast(StatusCluster, kube), PlanPass(source, chooser, shipped_catalog()), resync.known,
                          plan_applier(cluster, resync), lambda body: RecordedEvents(), lambda: datetime.now(UTC),
                          OperatorMetrics())
    return Operator(crd_plane, namespace, cluster, resync, planner, chooser)


def test_a_reconcile_from_a_copy_older_than_the_plan_never_scales_back(operator: Operator) -> None:
    op = operator
    op.set_spec(prefill=role(), decode=role())
    history = ReplicaHistory(ApiClient(load_configuration(op.plane.kubeconfig)), op.namespace)
    try:
        op.resync.observe("ADDED", op.service())
        op.reconcile_from(op.service())
        assert (op.replicas("prefill"), op.replicas("decode")) == (1, 1)  # the minimum before a plan
        assert op.replica_owners("prefill") == [PLANNER_MANAGER]  # handed over at creation
        op.plan(SMALL)
        older = op.service()  # its plan says one prefill and one decode replica
        assert older["status"]["plan"]["prefillReplicas"] == 1

        op.plan(LARGE)
        assert (op.replicas("prefill"), op.replicas("decode")) == (3, 2)
        scaled = op.deployment("prefill")["metadata"]["generation"]

        op.reconcile_from(older)  # the resync's body replaced by an older watch event; kopf's old body
        op.reconcile_from(older)
        op.plan(LARGE)  # the plan did not change: nothing to write, nothing to scale
        assert (op.replicas("prefill"), op.replicas("decode")) == (3, 2)
        assert op.deployment("prefill")["metadata"]["generation"] == scaled
        assert op.service()["status"]["prefill"]["replicas"] == 3
        time.sleep(1.0)  # room for a late scale-back to show on the watch
        assert history.settled("prefill", 3) == [1, 3]
        assert history.settled("decode", 2) == [1, 2]
    finally:
        history.stop()


def test_a_fixed_count_applies_at_once_and_the_planner_cannot_take_it_back(operator: Operator) -> None:
    op = operator
    op.set_spec(prefill=role(replicas=1), decode=role())
    op.resync.observe("ADDED", op.service())
    op.reconcile_from(op.service())
    assert op.replicas("prefill") == 1
    op.set_spec(prefill=role(replicas=2), decode=role())
    op.reconcile_from(op.service())
    assert op.replicas("prefill") == 2  # a person's count, in the one reconcile of the change
    assert op.replica_owners("prefill") == ["joulescale-operator"]

    op.set_spec(prefill=role(), decode=role())  # autoscaled from now: the count stays, the planner owns it
    op.reconcile_from(op.service())
    assert op.replicas("prefill") == 2
    assert op.replica_owners("prefill") == [PLANNER_MANAGER]
    op.plan(replace(CHOICE, replicas={"prefill": 4, "decode": 1}))
    assert op.replicas("prefill") == 4

    op.set_spec(prefill=role(high=3), decode=role())  # the bounds no longer hold the count
    op.reconcile_from(op.service())
    assert op.replicas("prefill") == 3
    autoscaled = op.service()

    op.set_spec(prefill=role(replicas=2), decode=role())
    op.reconcile_from(op.service())
    assert op.replicas("prefill") == 2
    assert op.replica_owners("prefill") == ["joulescale-operator"]
    with pytest.raises(PlanNotApplied):  # a plan applied from the body before the change
        apply_stored_plan(op.cluster, autoscaled)
    assert op.replicas("prefill") == 2
