"""The planner's field manager owns an autoscaled role's replicas (planned_replicas.py): the
reconciler's copy of the plan sets only a new Deployment's count, never an existing one's.
Over the in-memory cluster, which keeps server-side apply's rules for spec.replicas; the real
apiserver's are checked in tests/integration/operator/test_operator_planned_replicas_apiserver.py."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from joulescale.api import EnergyAwareLLMServiceSpec, PlanStatus
from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.planned_replicas import PlanNotApplied, apply_plan, apply_stored_plan
from joulescale_operator.reconcile import Reconciler
from joulescale_operator.render import ChildRef
from tests.unit.operator.conftest import MemoryCluster

PLANNER = "joulescale-operator-planner"
RECONCILER = "joulescale-operator"
PREFILL = ChildRef("apps/v1", "Deployment", "ns", "llama-prefill")
H100 = {"products": ["NVIDIA-H100-80GB-HBM3"]}


def prefill(replicas: int | None = None, low: int = 1, high: int = 6) -> dict[str, Any]:
    count: dict[str, Any] = {"replicas": replicas} if replicas is not None else {
        "autoscaling": {"minReplicas": low, "maxReplicas": high}}
    return {**count, "tensorParallelSize": 1, "gpu": H100}


def with_plan(body: dict[str, Any], prefill_replicas: int) -> dict[str, Any]:
    planned = copy.deepcopy(body)
    planned["status"] = {"plan": {"computedAt": "2026-01-01T12:00:00Z", "prefillReplicas": prefill_replicas,
                                  "decodeReplicas": 2}}
    return planned


def plan_to(cluster: MemoryCluster, body: dict[str, Any], prefill_replicas: int) -> None:
    """The planner applying a plan it has just written."""
    spec = EnergyAwareLLMServiceSpec.model_validate(body["spec"])
    plan = PlanStatus.model_validate({"computedAt": "2026-01-01T12:05:00Z", "prefillReplicas": prefill_replicas})
    apply_plan(cluster, ServiceIdentity.from_body(body), spec, plan)


def count(cluster: MemoryCluster) -> int:
    return int(cluster.objects[PREFILL]["spec"]["replicas"])


@pytest.fixture
def reconcile(memory_cluster: MemoryCluster, events: Any, clock: Any) -> Callable[[dict[str, Any]], None]:
    def run(body: dict[str, Any]) -> None:
        Reconciler(memory_cluster, events, clock).reconcile(body)

    return run


def test_a_new_deployment_starts_at_the_copys_plan_and_its_count_goes_to_the_planner(
    memory_cluster: MemoryCluster, reconcile: Callable[[dict[str, Any]], None], body_factory: Callable[..., Any]
) -> None:
    reconcile(with_plan(body_factory(prefill=prefill()), 2))
    assert count(memory_cluster) == 2
    assert memory_cluster.replica_owners[PREFILL] == {PLANNER}


def test_a_copy_older_than_the_plan_leaves_the_planners_count_alone(
    memory_cluster: MemoryCluster, reconcile: Callable[[dict[str, Any]], None], body_factory: Callable[..., Any]
) -> None:
    older = with_plan(body_factory(prefill=prefill()), 2)
    reconcile(older)
    plan_to(memory_cluster, older, 4)
    assert count(memory_cluster) == 4
    writes = memory_cluster.writes.count(PREFILL)
    reconcile(older)
    reconcile(body_factory(prefill=prefill()))  # a copy from before any plan: the minimum, 1
    assert count(memory_cluster) == 4
    assert memory_cluster.writes.count(PREFILL) == writes  # not even a write that changes nothing


def test_narrower_bounds_clamp_the_live_count_not_the_copys_plan(
    memory_cluster: MemoryCluster, reconcile: Callable[[dict[str, Any]], None], body_factory: Callable[..., Any]
) -> None:
    older = with_plan(body_factory(prefill=prefill()), 2)
    reconcile(older)
    plan_to(memory_cluster, older, 5)
    reconcile(with_plan(body_factory(prefill=prefill(high=3)), 2))
    assert count(memory_cluster) == 3
    reconcile(with_plan(body_factory(prefill=prefill(low=4)), 2))
    assert count(memory_cluster) == 4
    assert memory_cluster.replica_owners[PREFILL] == {PLANNER}


def test_a_role_turning_autoscaled_keeps_its_count_and_one_turning_fixed_takes_it_at_once(
    memory_cluster: MemoryCluster, reconcile: Callable[[dict[str, Any]], None], body_factory: Callable[..., Any]
) -> None:
    reconcile(body_factory(prefill=prefill(replicas=3)))
    assert memory_cluster.replica_owners[PREFILL] == {RECONCILER}
    autoscaled = body_factory(prefill=prefill())
    reconcile(autoscaled)  # no plan yet: neither the minimum nor the Deployment's default of one
    assert count(memory_cluster) == 3
    assert memory_cluster.replica_owners[PREFILL] == {PLANNER}
    plan_to(memory_cluster, autoscaled, 5)

    reconcile(body_factory(prefill=prefill(replicas=2)))
    assert count(memory_cluster) == 2
    assert memory_cluster.replica_owners[PREFILL] == {RECONCILER}
    with pytest.raises(PlanNotApplied):  # a plan from the body before the change
        apply_stored_plan(memory_cluster, with_plan(autoscaled, 5))
    assert count(memory_cluster) == 2


def test_a_plan_leaves_a_deployment_not_created_yet_to_the_reconciler(
    memory_cluster: MemoryCluster, body_factory: Callable[..., Any]
) -> None:
    plan_to(memory_cluster, body_factory(prefill=prefill()), 4)
    assert memory_cluster.objects == {}
