"""Pure status reducers: observed Deployments (+ the previous status) -> the reconciler's status
(which part of it the reconciler writes: status_owners.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from joulescale.api import EnergyAwareLLMServiceSpec
from joulescale_operator import reasons
from joulescale_operator.conditions import ConditionStatus, condition, remove_condition, set_condition
from joulescale_operator.identity import Role, ServiceIdentity
from joulescale_operator.pod_problems import PodProblem

_ROLE_CONDITION = {
    "prefill": reasons.PREFILL_READY,
    "decode": reasons.DECODE_READY,
    "router": reasons.ROUTER_READY,
}
MESSAGE_MAX_CHARS = 500


@dataclass(frozen=True, slots=True)
class DeploymentObservation:
    """What a Deployment says about its rollout, reduced to what the conditions need."""

    desired: int
    ready: int
    updated: int
    rolled_out: bool
    failure_reason: str | None
    failure_message: str = ""
    pods: int = 0
    """Pods the Deployment's ReplicaSets have (status.replicas), ready or not."""
    pod_problem: PodProblem | None = None
    """Set by the reconciler from the role's pods, only while the role is not ready."""

    @classmethod
    def of(cls, deployment: dict[str, Any]) -> DeploymentObservation:
        spec = deployment.get("spec", {})
        status = deployment.get("status", {})
        generation = deployment.get("metadata", {}).get("generation", 0)
        failure, failure_message = deployment_failure(status.get("conditions", []))
        return cls(
            desired=int(spec.get("replicas", 1)),
            ready=int(status.get("readyReplicas", 0)),
            updated=int(status.get("updatedReplicas", 0)),
            rolled_out=int(status.get("observedGeneration", 0)) >= int(generation),
            failure_reason=failure,
            failure_message=failure_message,
            pods=int(status.get("replicas", 0)),
        )


def deployment_failure(conditions: Any) -> tuple[str | None, str]:
    """The Deployment's own failure: a rollout past its deadline, or the ReplicaSet's failure to
    create pods (FailedCreate from a quota, an admission webhook), which the Deployment mirrors."""
    failure: str | None = None
    message = ""
    for cond in conditions if isinstance(conditions, list) else []:
        if not isinstance(cond, dict):
            continue
        raw = cond.get("message")
        text = raw if isinstance(raw, str) else ""
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            failure, message = reasons.PROGRESS_DEADLINE_EXCEEDED, text
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            failure, message = str(cond.get("reason") or reasons.REPLICA_FAILURE), text
    return failure, message[:MESSAGE_MAX_CHARS]


def needs_pod_reading(observation: DeploymentObservation | None) -> bool:
    """Whether a role's pods may say more than its Deployment: some wanted replica is not ready
    and the Deployment has pods that are not ready (none before its controller made them)."""
    return _short_of_ready(observation) and observation is not None and observation.pods > observation.ready


def _short_of_ready(observation: DeploymentObservation | None) -> bool:
    if observation is None or observation.desired == 0:
        return False
    o = observation
    return not o.rolled_out or o.updated < o.desired or o.ready < o.desired


def role_problem(observation: DeploymentObservation | None) -> tuple[str, str] | None:
    """(reason, message) of what keeps a role from becoming ready by itself, or None while it is
    only on its way (pods starting, a rollout going on)."""
    if observation is None:
        return None
    if observation.failure_reason is not None:
        return observation.failure_reason, observation.failure_message
    if observation.pod_problem is not None and _short_of_ready(observation):
        return observation.pod_problem.reason, observation.pod_problem.message
    return None


def service_endpoint(identity: ServiceIdentity, spec: EnergyAwareLLMServiceSpec) -> str:
    """Where clients connect: the router's Service when there is a router, else decode's."""
    role: Role = "router" if spec.router.enabled else "decode"
    port = spec.router.port if spec.router.enabled else spec.engine.port
    return f"{identity.child_name(role)}.{identity.namespace}.svc:{port}"


def role_readiness(observation: DeploymentObservation | None) -> tuple[ConditionStatus, str, str]:
    if observation is None:
        return "False", reasons.DEPLOYMENT_MISSING, "The Deployment does not exist yet."
    ready, desired = observation.ready, observation.desired
    counts = f"{ready}/{desired} replicas ready."
    problem = role_problem(observation)
    if problem is not None:
        return "False", problem[0], f"{counts} {problem[1]}".strip()
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


def role_status(observation: DeploymentObservation | None) -> dict[str, Any]:
    """The reconciler's fields of status.<role> (the planner writes the role's baseClockMHz)."""
    desired = observation.desired if observation else 0
    ready = observation.ready if observation else 0
    return {"replicas": desired, "readyReplicas": ready, "readyOfDesired": f"{ready}/{desired}"}


def reduce_status(
    previous: dict[str, Any],
    generation: int,
    observed: dict[Role, DeploymentObservation | None],
    now: datetime,
) -> dict[str, Any]:
    """The operator-owned part of the status; `observed` has a router entry only when enabled."""
    conditions = list(previous.get("conditions", []))
    if "router" not in observed:
        conditions = remove_condition(conditions, reasons.ROUTER_READY)
    not_ready: list[str] = []
    problems: list[tuple[str, str, str]] = []
    for role, obs in observed.items():
        status, reason, message = role_readiness(obs)
        if status != "True":
            not_ready.append(role)
        problem = role_problem(obs)
        if problem is not None:
            problems.append((role, *problem))
        conditions = set_condition(
            conditions, condition(_ROLE_CONDITION[role], status, reason, message, generation, now)
        )
    conditions = set_condition(conditions, ready_condition(not_ready, problems, generation, now))
    conditions = set_condition(conditions, degraded_condition(problems, generation, now))
    result: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "prefill": role_status(observed.get("prefill")),
        "decode": role_status(observed.get("decode")),
        "router": role_status(observed["router"]) if "router" in observed else None,
    }
    return result


def ready_condition(
    not_ready: list[str], problems: list[tuple[str, str, str]], generation: int, now: datetime
) -> dict[str, Any]:
    """Ready carries the first role's problem as its reason (kubectl get shows it), else RolesNotReady."""
    if not not_ready:
        return condition(reasons.READY, "True", reasons.ALL_REPLICAS_READY, "Every role is ready.", generation, now)
    reason = problems[0][1] if problems else reasons.ROLES_NOT_READY
    described = [f"{role} ({why})" for role, why, _ in problems]
    described += [role for role in not_ready if role not in {p[0] for p in problems}]
    return condition(reasons.READY, "False", reason, f"Not ready: {', '.join(described)}.", generation, now)


def degraded_condition(problems: list[tuple[str, str, str]], generation: int, now: datetime) -> dict[str, Any]:
    """Degraded=True while some role cannot become ready by itself: unschedulable or stuck pods,
    a failed ReplicaSet, a rollout past its deadline."""
    if not problems:
        return condition(
            reasons.DEGRADED, "False", reasons.AS_EXPECTED, "No role reports a failure.", generation, now
        )
    message = "; ".join(f"{role}: {why}: {text}" if text else f"{role}: {why}" for role, why, text in problems)
    return condition(reasons.DEGRADED, "True", problems[0][1], message[:1000], generation, now)


def failed_status(
    previous: dict[str, Any], generation: int, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """Ready=False with the failure's reason; every other field stays as it was."""
    conditions = set_condition(
        list(previous.get("conditions", [])),
        condition(reasons.READY, "False", reason, message, generation, now),
    )
    return {"observedGeneration": generation, "conditions": conditions}
