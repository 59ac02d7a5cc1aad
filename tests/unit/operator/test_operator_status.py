"""Status reducers: Deployments -> conditions per the API conventions, and minimal patches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from joulescale_operator.conditions import find, set_condition
from joulescale_operator.identity import Role
from joulescale_operator.status import DeploymentObservation, reduce_status, role_readiness
from joulescale_operator.status_owners import owned_changes, reconciler_status

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def deployment(replicas: int, ready: int, updated: int | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 2,
            "readyReplicas": ready,
            "updatedReplicas": replicas if updated is None else updated,
            **status,
        },
    }


def obs(replicas: int, ready: int, **kwargs: Any) -> DeploymentObservation:
    return DeploymentObservation.of(deployment(replicas, ready, **kwargs))


def test_a_role_is_ready_when_every_desired_replica_is_updated_and_ready() -> None:
    assert role_readiness(obs(2, 2))[:2] == ("True", "AllReplicasReady")
    assert role_readiness(obs(2, 1))[:2] == ("False", "ReplicasNotReady")
    assert role_readiness(obs(2, 2, updated=1))[:2] == ("False", "RolloutInProgress")
    assert role_readiness(obs(0, 0))[:2] == ("False", "ScaledToZero")
    assert role_readiness(None)[:2] == ("False", "DeploymentMissing")


def test_an_unobserved_deployment_generation_is_a_rollout_in_progress() -> None:
    stale = deployment(1, 1)
    stale["status"]["observedGeneration"] = 1
    assert role_readiness(DeploymentObservation.of(stale))[1] == "RolloutInProgress"


def test_ready_needs_both_roles_and_names_the_missing_one() -> None:
    status = reduce_status({}, 3, {"prefill": obs(1, 1), "decode": obs(2, 1)}, T0)
    ready = find(status["conditions"], "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "RolesNotReady", 3)
    assert "decode" in ready["message"]
    assert "prefill" not in ready["message"]
    assert status["prefill"]["readyOfDesired"] == "1/1"
    assert status["decode"] == {"replicas": 2, "readyReplicas": 1, "readyOfDesired": "1/2"}
    assert status["observedGeneration"] == 3


def test_a_progress_deadline_makes_the_service_degraded() -> None:
    stuck = obs(
        1, 0, conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    )
    status = reduce_status({}, 1, {"prefill": obs(1, 1), "decode": stuck}, T0)
    degraded = find(status["conditions"], "Degraded")
    assert degraded is not None
    assert (degraded["status"], degraded["reason"]) == (
        "True",
        "ProgressDeadlineExceeded",
    )


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = reduce_status({}, 1, {"prefill": obs(1, 0), "decode": obs(1, 0)}, T0)
    later = T0 + timedelta(minutes=5)
    same = reduce_status(first, 1, {"prefill": obs(1, 0), "decode": obs(1, 0)}, later)
    assert find(same["conditions"], "Ready") == find(first["conditions"], "Ready")
    flipped = reduce_status(first, 1, {"prefill": obs(1, 1), "decode": obs(1, 1)}, later)
    ready = find(flipped["conditions"], "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_conditions_of_other_actors_are_kept() -> None:
    planned = {
        "type": "Planned",
        "status": "True",
        "reason": "Solved",
        "message": "",
        "lastTransitionTime": "x",
    }
    status = reduce_status({"conditions": [planned]}, 1, {"prefill": obs(1, 1), "decode": obs(1, 1)}, T0)
    assert find(status["conditions"], "Planned") == planned


def test_an_unchanged_status_yields_an_empty_patch() -> None:
    observed: dict[Role, DeploymentObservation | None] = {"prefill": obs(1, 1), "decode": obs(1, 1)}
    first = reduce_status({}, 1, observed, T0)
    previous = {key: value for key, value in first.items() if value is not None}
    later = reduce_status(previous, 1, observed, T0 + timedelta(hours=1))
    assert owned_changes(reconciler_status(previous), reconciler_status(later)) == {}


def test_a_router_that_went_away_is_removed_from_the_status() -> None:
    previous = {"router": {"replicas": 1}}
    desired = reduce_status(previous, 1, {"prefill": obs(1, 1), "decode": obs(1, 1)}, T0)
    patch = owned_changes(reconciler_status(previous), reconciler_status(desired))
    assert patch["router"] is None


def test_set_condition_replaces_by_type_and_appends_new_types() -> None:
    a = {"type": "A", "status": "True", "lastTransitionTime": "t0"}
    b = {"type": "B", "status": "False", "lastTransitionTime": "t0"}
    updated = set_condition([a, b], {"type": "B", "status": "True", "lastTransitionTime": "t1"})
    assert updated == [a, {"type": "B", "status": "True", "lastTransitionTime": "t1"}]
    assert len(set_condition([a], {"type": "C", "status": "True", "lastTransitionTime": "t1"})) == 2
