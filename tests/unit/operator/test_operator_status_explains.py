"""Status that explains: a role that is not ready says why, from its pods or its Deployment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from joulescale_operator.conditions import find
from joulescale_operator.pod_problems import pods_of_deployment, pods_problem
from joulescale_operator.reconcile import Reconciler
from joulescale_operator.status import DeploymentObservation, needs_pod_reading, reduce_status, role_readiness

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NO_GPU = (
    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: "
    "3 No preemption victims found for incoming pod."
)
TAINT = "0/2 nodes are available: 2 node(s) had untolerated taint {nvidia.com/gpu: present}."


def pod(name: str, role: str = "decode", phase: str = "Pending", **status: Any) -> dict[str, Any]:
    labels = {"joulescale.io/service": "llama", "joulescale.io/role": role}
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"llama-{role}-5d8f", "controller": True}
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": labels, "ownerReferences": [owner]},
        "status": {"phase": phase, **status},
    }


def unschedulable(name: str, message: str = NO_GPU, role: str = "decode") -> dict[str, Any]:
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    return pod(name, role, conditions=[scheduled])


def waiting(name: str, reason: str, message: str = "") -> dict[str, Any]:
    state = {"waiting": {"reason": reason, "message": message}}
    return pod(name, containerStatuses=[{"name": "engine", "state": state}])


def observation(replicas: int, ready: int, conditions: list[dict[str, Any]] | None = None) -> DeploymentObservation:
    return DeploymentObservation.of(
        {
            "metadata": {"generation": 1},
            "spec": {"replicas": replicas},
            "status": {
                "observedGeneration": 1,
                "readyReplicas": ready,
                "updatedReplicas": replicas,
                "conditions": conditions or [],
            },
        }
    )


# --- the pods' reduction -------------------------------------------------------------------


def test_an_unschedulable_pod_gives_the_schedulers_reason_and_message() -> None:
    problem = pods_problem([pod("ok", phase="Running"), unschedulable("llama-decode-abc", TAINT)])
    assert problem is not None
    assert problem.reason == "Unschedulable"
    assert problem.message == f"pod llama-decode-abc cannot be scheduled: {TAINT}"


def test_several_unschedulable_pods_are_counted_and_scheduling_comes_before_containers() -> None:
    problem = pods_problem([waiting("w", "ImagePullBackOff"), unschedulable("a"), unschedulable("b")])
    assert problem is not None
    assert problem.reason == "Unschedulable"
    assert problem.message.startswith("2 pods (first a) cannot be scheduled: 0/3 nodes are available")


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError"])
def test_a_container_stuck_waiting_is_a_problem(reason: str) -> None:
    problem = pods_problem([waiting("llama-decode-x", reason, "back-off pulling image vllm:nope")])
    assert problem is not None
    assert problem.reason == reason
    assert problem.message == f"pod llama-decode-x: container engine is waiting in {reason}: back-off pulling image vllm:nope"


def test_pods_on_their_way_are_no_problem() -> None:
    creating = waiting("c", "ContainerCreating")
    scheduled = pod("s", conditions=[{"type": "PodScheduled", "status": "True"}])
    terminating = unschedulable("t")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert pods_problem([creating, scheduled, terminating, pod("r", phase="Running")]) is None


@pytest.mark.parametrize(
    "shape",
    [
        {},
        {"metadata": None, "status": None},
        {"status": {"conditions": "nope"}},
        {"status": {"conditions": [None, 3, {"type": "PodScheduled", "status": "False", "message": 7}]}},
        {"status": {"containerStatuses": [None, {"state": None}, {"state": {"waiting": "x"}}]}},
        {"status": {"phase": "Pending", "initContainerStatuses": {"a": 1}}},
    ],
)
def test_odd_pod_shapes_never_raise(shape: dict[str, Any]) -> None:
    pods_problem([shape])  # some are problems (a PodScheduled=False without a message), none raise


def test_a_long_scheduler_message_is_clipped() -> None:
    problem = pods_problem([unschedulable("p", "x" * 5000)])
    assert problem is not None
    assert len(problem.message) == 500
    assert problem.message.endswith("...")


# --- the conditions ------------------------------------------------------------------------


def test_an_unschedulable_decode_is_in_its_condition_in_ready_and_degrades_the_service() -> None:
    problem = pods_problem([unschedulable("llama-decode-abc")])
    stuck = DeploymentObservation(desired=2, ready=0, updated=2, rolled_out=True, failure_reason=None, pod_problem=problem)
    status = reduce_status({}, 1, {"prefill": observation(1, 1), "decode": stuck}, T0)
    decode, ready, degraded = (find(status["conditions"], t) for t in ("DecodeReady", "Ready", "Degraded"))
    assert decode is not None
    assert ready is not None
    assert degraded is not None
    assert (decode["status"], decode["reason"]) == ("False", "Unschedulable")
    assert decode["message"] == f"0/2 replicas ready. pod llama-decode-abc cannot be scheduled: {NO_GPU}"
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "Unschedulable", "Not ready: decode (Unschedulable).")
    assert (degraded["status"], degraded["reason"]) == ("True", "Unschedulable")
    assert degraded["message"].startswith("decode: Unschedulable: pod llama-decode-abc cannot be scheduled: 0/3 nodes")


def test_a_pod_problem_of_a_ready_role_is_ignored() -> None:
    problem = pods_problem([unschedulable("old")])
    ready = DeploymentObservation(desired=1, ready=1, updated=1, rolled_out=True, failure_reason=None, pod_problem=problem)
    assert role_readiness(ready)[:2] == ("True", "AllReplicasReady")


def test_a_replica_failure_carries_the_replicasets_message() -> None:
    quota = (
        'pods "llama-decode-7d9-x" is forbidden: exceeded quota: gpus, requested: requests.nvidia.com/gpu=4, '
        "used: requests.nvidia.com/gpu=8, limited: requests.nvidia.com/gpu=8"
    )
    failed = observation(
        1, 0, [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": quota}]
    )
    status = reduce_status({}, 1, {"prefill": observation(1, 1), "decode": failed}, T0)
    decode, degraded = find(status["conditions"], "DecodeReady"), find(status["conditions"], "Degraded")
    assert decode is not None
    assert degraded is not None
    assert (decode["reason"], decode["message"]) == ("FailedCreate", f"0/1 replicas ready. {quota}")
    assert (degraded["status"], degraded["reason"]) == ("True", "FailedCreate")
    assert quota in degraded["message"]


def test_a_progress_deadline_carries_the_deployments_message() -> None:
    message = 'ReplicaSet "llama-prefill-5f" has timed out progressing.'
    stuck = observation(
        1, 0, [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": message}]
    )
    prefill = role_readiness(stuck)
    assert prefill == ("False", "ProgressDeadlineExceeded", f"0/1 replicas ready. {message}")


def test_the_router_has_its_own_condition_which_goes_with_the_router() -> None:
    problem = pods_problem([unschedulable("llama-router-1", TAINT, role="router")])
    router = DeploymentObservation(desired=1, ready=0, updated=1, rolled_out=True, failure_reason=None, pod_problem=problem)
    engines: dict[Any, DeploymentObservation | None] = {"prefill": observation(1, 1), "decode": observation(1, 1)}
    status = reduce_status({}, 1, {**engines, "router": router}, T0)
    router_ready = find(status["conditions"], "RouterReady")
    assert router_ready is not None
    assert router_ready["reason"] == "Unschedulable"
    assert TAINT in router_ready["message"]
    without = reduce_status(status, 1, engines, T0)
    assert find(without["conditions"], "RouterReady") is None
    assert find(without["conditions"], "Degraded")["status"] == "False"  # type: ignore[index]


# --- the reconciler: reads pods only when needed, sets the endpoint -------------------------------


def run(reconciler: Reconciler, body: dict[str, Any]) -> dict[str, Any]:
    patch = reconciler.reconcile(body)
    status = {**body.get("status", {}), **patch}
    body["status"] = {key: value for key, value in status.items() if value is not None}
    return patch


def test_the_reconciler_reads_the_pods_of_not_ready_roles_only(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory()
    memory_cluster.pods = [unschedulable("llama-decode-1"), pod("llama-prefill-1", role="prefill", phase="Running")]
    run(Reconciler(memory_cluster, events, clock), body)
    assert memory_cluster.pod_lists == []  # the Deployments have no pods yet: nothing to read
    memory_cluster.deployment_status = {"replicas": 1}  # their controller made a pod each
    run(Reconciler(memory_cluster, events, clock), body)
    assert sorted(selector["joulescale.io/role"] for _, selector in memory_cluster.pod_lists) == ["decode", "prefill"]
    decode = find(body["status"]["conditions"], "DecodeReady")
    assert decode is not None
    assert decode["reason"] == "Unschedulable"
    assert find(body["status"]["conditions"], "Degraded")["status"] == "True"  # type: ignore[index]
    prefill = find(body["status"]["conditions"], "PrefillReady")
    assert prefill is not None
    assert prefill["reason"] == "RolloutInProgress"

    memory_cluster.pod_lists.clear()
    memory_cluster.deployment_status = {"observedGeneration": 99, "readyReplicas": 2, "updatedReplicas": 2}
    body["spec"]["decode"]["replicas"] = body["spec"]["prefill"]["replicas"] = 2
    run(Reconciler(memory_cluster, events, clock), body)
    assert memory_cluster.pod_lists == []  # every role ready: no pod read at all
    assert find(body["status"]["conditions"], "Degraded")["status"] == "False"  # type: ignore[index]


def test_pods_that_cannot_be_read_leave_the_deployments_word(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    memory_cluster.refuse_pods = True
    memory_cluster.deployment_status = {"replicas": 1}
    body = body_factory()
    run(Reconciler(memory_cluster, events, clock), body)
    decode = find(body["status"]["conditions"], "DecodeReady")
    assert decode is not None
    assert decode["reason"] == "RolloutInProgress"
    assert find(body["status"]["conditions"], "Degraded")["status"] == "False"  # type: ignore[index]


def test_the_endpoint_is_the_routers_service_or_else_decodes(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory()
    run(Reconciler(memory_cluster, events, clock), body)
    assert body["status"]["endpoint"] == "llama-decode.ns.svc:8000"
    body["spec"]["router"] = {"enabled": True, "image": "proxy:1", "port": 9000}
    run(Reconciler(memory_cluster, events, clock), body)
    assert body["status"]["endpoint"] == "llama-router.ns.svc:9000"


def test_pods_are_read_only_when_the_deployment_has_pods_that_are_not_ready() -> None:
    def of(desired: int, ready: int, updated: int, pods: int) -> DeploymentObservation:
        return DeploymentObservation(desired, ready, updated, rolled_out=True, failure_reason=None, pods=pods)

    assert not needs_pod_reading(of(2, 0, 0, pods=0))  # no pod made yet
    assert needs_pod_reading(of(2, 0, 2, pods=2))  # made, not ready
    assert needs_pod_reading(of(2, 2, 1, pods=3))  # a surge pod of a rollout, e.g. unschedulable
    assert not needs_pod_reading(of(2, 2, 2, pods=2))  # ready
    assert not needs_pod_reading(of(0, 0, 0, pods=0))
    assert not needs_pod_reading(None)


def test_only_pods_of_the_roles_replicasets_count() -> None:
    ours = unschedulable("llama-decode-5d8f-a")
    by_hand = unschedulable("impostor")
    by_hand["metadata"]["ownerReferences"] = []
    other = unschedulable("llama-decoder-x")
    other["metadata"]["ownerReferences"][0]["name"] = "llama-decoder-77"  # another Deployment's RS
    not_controller = unschedulable("weak")
    not_controller["metadata"]["ownerReferences"][0]["controller"] = False
    odd = unschedulable("odd")
    odd["metadata"]["ownerReferences"] = [None, "x", {"kind": "ReplicaSet"}]
    pods = [by_hand, other, not_controller, odd, ours]
    assert pods_of_deployment(pods, "llama-decode") == [ours]


def test_a_pod_made_by_hand_with_the_roles_labels_does_not_degrade_the_service(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    impostor = unschedulable("impostor")
    impostor["metadata"]["ownerReferences"] = []
    memory_cluster.pods = [impostor]
    memory_cluster.deployment_status = {"replicas": 2}
    body = body_factory()
    run(Reconciler(memory_cluster, events, clock), body)
    assert memory_cluster.pod_lists  # the pods were read
    assert find(body["status"]["conditions"], "Degraded")["status"] == "False"  # type: ignore[index]
