"""Pure status reducers: observed Deployments (+ the previous status) -> the status to write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from joulescale.api import PlanStatus
from joulescale_operator import reasons
from joulescale_operator.conditions import ConditionStatus, condition, set_condition
from joulescale_operator.identity import Role

_ROLE_CONDITION = {"prefill": reasons.PREFILL_READY, "decode": reasons.DECODE_READY}


@dataclass(frozen=True, slots=True)
class DeploymentObservation:
    """What a Deployment says about its rollout, reduced to what the conditions need."""

    desired: int
    ready: int
    updated: int
    rolled_out: bool
    failure_reason: str | None

    @classmethod
    def of(cls, deployment: dict[str, Any]) -> DeploymentObservation:
        spec = deployment.get("spec", {})
        status = deployment.get("status", {})
        generation = deployment.get("metadata", {}).get("generation", 0)
        failure = None
        for cond in status.get("conditions", []):
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                failure = reasons.PROGRESS_DEADLINE_EXCEEDED
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                failure = cond.get("reason") or "ReplicaFailure"
        return cls(
            desired=int(spec.get("replicas", 1)),
            ready=int(status.get("readyReplicas", 0)),
            updated=int(status.get("updatedReplicas", 0)),
            rolled_out=int(status.get("observedGeneration", 0)) >= int(generation),
            failure_reason=failure,
        )


def role_readiness(observation: DeploymentObservation | None) -> tuple[ConditionStatus, str, str]:
    if observation is None:
        return "False", reasons.DEPLOYMENT_MISSING, "The Deployment does not exist yet."
    ready, desired = observation.ready, observation.desired
    counts = f"{ready}/{desired} replicas ready."
    if observation.failure_reason is not None:
        return "False", observation.failure_reason, counts
    if desired == 0:
        return "False", reasons.SCALED_TO_ZERO, "No replicas are requested."
    if not observation.rolled_out or observation.updated < desired:
        return (
            "False",
            reasons.ROLLOUT_IN_PROGRESS,
            f"{observation.updated}/{desired} replicas updated; {counts}",
        )
    if ready < desired:
        return "False", reasons.REPLICAS_NOT_READY, counts
    return "True", reasons.ALL_REPLICAS_READY, counts


def role_status(observation: DeploymentObservation | None, base_clock_mhz: int | None) -> dict[str, Any]:
    desired = observation.desired if observation else 0
    ready = observation.ready if observation else 0
    status: dict[str, Any] = {
        "replicas": desired,
        "readyReplicas": ready,
        "readyOfDesired": f"{ready}/{desired}",
    }
    if base_clock_mhz is not None:
        status["baseClockMHz"] = base_clock_mhz
    return status


def reduce_status(
    previous: dict[str, Any],
    generation: int,
    observed: dict[Role, DeploymentObservation | None],
    plan: PlanStatus | None,
    now: datetime,
) -> dict[str, Any]:
    """The operator-owned part of the status; `observed` has a router entry only when enabled."""
    conditions = list(previous.get("conditions", []))
    not_ready: list[str] = []
    failures: list[str] = []
    for role, obs in observed.items():
        status, reason, message = role_readiness(obs)
        if status != "True":
            not_ready.append(role)
        if obs is not None and obs.failure_reason is not None:
            failures.append(f"{role}: {obs.failure_reason}")
        if role in _ROLE_CONDITION:
            conditions = set_condition(
                conditions, condition(_ROLE_CONDITION[role], status, reason, message, generation, now)
            )
    if not_ready:
        ready = condition(
            reasons.READY,
            "False",
            reasons.ROLES_NOT_READY,
            f"Not ready: {', '.join(not_ready)}.",
            generation,
            now,
        )
    else:
        ready = condition(
            reasons.READY, "True", reasons.ALL_REPLICAS_READY, "Every role is ready.", generation, now
        )
    conditions = set_condition(conditions, ready)
    if failures:
        degraded = condition(
            reasons.DEGRADED, "True", failures[0].split(": ", 1)[1], "; ".join(failures), generation, now
        )
    else:
        degraded = condition(
            reasons.DEGRADED,
            "False",
            reasons.AS_EXPECTED,
            "No Deployment reports a failure.",
            generation,
            now,
        )
    conditions = set_condition(conditions, degraded)
    result: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "prefill": role_status(observed.get("prefill"), plan.prefill_base_clock_mhz if plan else None),
        "decode": role_status(observed.get("decode"), plan.decode_base_clock_mhz if plan else None),
        "router": role_status(observed["router"], None) if "router" in observed else None,
    }
    return result


def failed_status(
    previous: dict[str, Any], generation: int, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """Ready=False with the failure's reason; every other field stays as it was."""
    conditions = set_condition(
        list(previous.get("conditions", [])),
        condition(reasons.READY, "False", reason, message, generation, now),
    )
    return {"observedGeneration": generation, "conditions": conditions}


def status_patch(previous: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The merge patch from previous to desired over desired's keys; empty when nothing changed."""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if value is None:
            if previous.get(key) is not None:
                patch[key] = None
        elif previous.get(key) != value:
            patch[key] = value
    return patch
