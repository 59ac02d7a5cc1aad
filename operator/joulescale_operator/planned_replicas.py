"""Who sets the replicas of an autoscaled role's Deployment: the planner, under its own field manager.

The reconciler runs from whatever copy of the service it holds (kopf's event body, the resync's
last watch event), and that copy may predate the planner's last plan. Had it rendered the
replicas of autoscaled roles from its copy's status.plan, a reconcile from an old copy would
scale a Deployment back to the previous plan until the next reconcile: pods deleted and created
again, each a model load of minutes. So, as for the status (status_owners.py), one owner per
field: ``spec.replicas`` of an autoscaled role belongs to the planner's field manager (the
operator's plus PLANNER_MANAGER_SUFFIX), and the reconciler's manifest leaves it out. A copy
that does not send a field cannot roll it back.

- The planner applies a new plan's counts (``apply_plan``), from the plan it has just written,
  without force: when another manager holds the field with another value (the reconciler's fixed
  count of a role no longer autoscaled, a person's ``kubectl scale``), the apply is refused and
  the planner tries again at its next pass.
- The reconciler hands the field over (``hand_over``) where the planner does not hold it yet: a
  Deployment it just created (with the count of its copy's plan: nothing runs yet to roll back),
  a role that turns from a fixed count to autoscaling, a Deployment from an operator before
  this split; and it clamps the live count when the bounds no longer hold it. The hand-over
  applies the live count (never its copy's plan), forced, at the Deployment's resourceVersion
  as read, so a scale that lands meanwhile is never undone. Only then does the reconciler apply
  its manifest without replicas: a field whose only owner stops sending it would fall back to
  the Deployment's default of one replica.
- A fixed ``spec.<role>.replicas`` stays the reconciler's, applied with force at once.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import pydantic

from joulescale.api import EnergyAwareLLMServiceSpec, PlanStatus
from joulescale_operator.identity import ENGINE_ROLES, ROLE_LABEL, Role, ServiceIdentity
from joulescale_operator.kube import ClusterError, Conflict
from joulescale_operator.pods import role_spec
from joulescale_operator.render import ChildRef
from joulescale_operator.status_owners import PLANNER_MANAGER_SUFFIX

logger = logging.getLogger(__name__)


class ScaleCluster(Protocol):
    def get(self, ref: ChildRef) -> dict[str, Any] | None: ...

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, manager_suffix: str = "", force: bool = True
    ) -> dict[str, Any]: ...

    def manager(self, suffix: str = "") -> str: ...


class PlanNotApplied(ClusterError):
    """Some autoscaled role's Deployment does not have the plan's count yet (the planner retries)."""


def autoscaled_role(spec: EnergyAwareLLMServiceSpec, manifest: dict[str, Any]) -> Role | None:
    """The engine role whose Deployment this manifest is, when that role is autoscaled."""
    if manifest.get("kind") != "Deployment":
        return None
    role = (manifest.get("metadata", {}).get("labels") or {}).get(ROLE_LABEL)
    if role not in ENGINE_ROLES:
        return None
    return role if role_spec(spec, role).autoscaling is not None else None


def within_bounds(spec: EnergyAwareLLMServiceSpec, role: Role, count: int) -> int:
    scaling = role_spec(spec, role).autoscaling
    assert scaling is not None
    return max(scaling.min_replicas, min(scaling.max_replicas, count))


def live_replicas(deployment: dict[str, Any]) -> int:
    """The Deployment's spec.replicas (absent: the apiserver's default of one)."""
    value = (deployment.get("spec") or {}).get("replicas")
    return int(value) if isinstance(value, int) else 1


def planner_holds(cluster: ScaleCluster, deployment: dict[str, Any]) -> bool:
    """Whether the planner's field manager owns the Deployment's spec.replicas."""
    manager = cluster.manager(PLANNER_MANAGER_SUFFIX)
    for entry in (deployment.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, dict) or entry.get("manager") != manager or entry.get("subresource"):
            continue
        spec_fields = (entry.get("fieldsV1") or {}).get("f:spec")
        if isinstance(spec_fields, dict) and "f:replicas" in spec_fields:
            return True
    return False


def scale_manifest(deployment: dict[str, Any], count: int, resource_version: str | None = None) -> dict[str, Any]:
    """The planner's whole apply of a Deployment: its replicas, nothing else."""
    meta = deployment["metadata"]
    metadata: dict[str, Any] = {"name": meta["name"], "namespace": meta["namespace"]}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": {"replicas": count}}


def hand_over(
    cluster: ScaleCluster, spec: EnergyAwareLLMServiceSpec, role: Role, deployment: dict[str, Any]
) -> dict[str, Any] | None:
    """Make the planner's manager the owner of this stored Deployment's replicas, at its live count
    within the bounds; None when it already is and the count is within them (nothing written).
    A Deployment that moved since it was read is a Conflict (the caller's retry reads it again)."""
    live = live_replicas(deployment)
    count = within_bounds(spec, role, live)
    if count == live and planner_holds(cluster, deployment):
        return None
    version = str(deployment["metadata"].get("resourceVersion", "")) or None
    return cluster.apply(
        scale_manifest(deployment, count, version), manager_suffix=PLANNER_MANAGER_SUFFIX, force=True
    )


def without_planned_replicas(
    spec: EnergyAwareLLMServiceSpec, child: dict[str, Any], existing: dict[ChildRef, dict[str, Any] | None]
) -> dict[str, Any]:
    """The manifest the reconciler applies: an autoscaled role's existing Deployment without
    replicas (the planner's field); only its creation carries the count of the copy's plan."""
    if autoscaled_role(spec, child) is None or existing.get(ChildRef.of(child)) is None:
        return child
    return _without_replicas(child)


def hand_over_existing(
    cluster: ScaleCluster, spec: EnergyAwareLLMServiceSpec, existing: dict[ChildRef, dict[str, Any] | None]
) -> None:
    """Before the reconciler applies an autoscaled role's stored Deployment without replicas,
    the planner's manager must own them: else the apply would drop the field."""
    for stored in existing.values():
        role = autoscaled_role(spec, stored) if stored is not None else None
        if stored is not None and role is not None:
            hand_over(cluster, spec, role, stored)


def hand_over_created(
    cluster: ScaleCluster,
    spec: EnergyAwareLLMServiceSpec,
    manifests: list[dict[str, Any]],
    applied: list[dict[str, Any]],
    existing: dict[ChildRef, dict[str, Any] | None],
) -> list[dict[str, Any]]:
    """``applied`` after the hand-over of the autoscaled Deployments just created with their first
    count: that count goes to the planner's manager, then the reconciler's manifest is applied
    again without it (the object as stored after that replaces the creation's answer)."""
    result = list(applied)
    for index, manifest in enumerate(manifests):
        role = autoscaled_role(spec, manifest)
        if role is None or existing.get(ChildRef.of(manifest)) is not None:
            continue
        hand_over(cluster, spec, role, applied[index])
        result[index] = cluster.apply(_without_replicas(manifest))
    return result


def _without_replicas(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, "spec": {k: v for k, v in manifest["spec"].items() if k != "replicas"}}


def planned_count(spec: EnergyAwareLLMServiceSpec, role: Role, plan: PlanStatus | None) -> int | None:
    if plan is None:
        return None
    planned = plan.prefill_replicas if role == "prefill" else plan.decode_replicas
    return None if planned is None else within_bounds(spec, role, planned)


def apply_plan(
    cluster: ScaleCluster, identity: ServiceIdentity, spec: EnergyAwareLLMServiceSpec, plan: PlanStatus | None
) -> None:
    """Scale each autoscaled role's Deployment to the plan's count, as the planner's manager.
    A Deployment not there yet is left to the reconciler, which creates it from this plan; a
    refusal (another manager holds the count) raises PlanNotApplied after the other role."""
    refused = []
    for role in ENGINE_ROLES:
        if role_spec(spec, role).autoscaling is None:
            continue
        count = planned_count(spec, role, plan)
        ref = ChildRef("apps/v1", "Deployment", identity.namespace, identity.child_name(role))
        deployment = cluster.get(ref) if count is not None else None
        if count is None or deployment is None:
            continue
        if live_replicas(deployment) == count and planner_holds(cluster, deployment):
            continue
        try:
            cluster.apply(scale_manifest(deployment, count), manager_suffix=PLANNER_MANAGER_SUFFIX, force=False)
        except Conflict as conflict:
            logger.info("%s/%s: %s keeps its count for now: %s", identity.namespace, identity.name, role, conflict)
            refused.append(role)
    if refused:
        raise PlanNotApplied(f"the plan's count of {', '.join(refused)} is held by another field manager")


def apply_stored_plan(cluster: ScaleCluster, body: dict[str, Any]) -> None:
    """apply_plan with the spec and plan of the service as the planner just wrote it (an
    unreadable spec or plan is left to the reconciler's report)."""
    try:
        spec = EnergyAwareLLMServiceSpec.model_validate(body.get("spec") or {})
        raw = (body.get("status") or {}).get("plan")
        plan = PlanStatus.model_validate(raw) if raw else None
    except pydantic.ValidationError:
        return
    apply_plan(cluster, ServiceIdentity.from_body(body), spec, plan)
