"""One reconcile of one service: validate, render, apply, reduce the status (no kopf here).

The cluster, the event sink and the clock are injected, so the whole flow runs in unit
tests against an in-memory cluster. Retryable failures (ClusterUnavailable) propagate to
the handler boundary, which turns them into kopf.TemporaryError.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import pydantic

from joulescale.api import EnergyAwareLLMServiceSpec, PlanStatus
from joulescale_operator import reasons
from joulescale_operator.identity import ROLE_LABEL, Role, ServiceIdentity
from joulescale_operator.kube import Cluster, Rejected
from joulescale_operator.render import ChildRef, render_children, router_discovery_rbac
from joulescale_operator.status import DeploymentObservation, failed_status, reduce_status, status_patch
from joulescale_operator.validation import InvalidSpec, validated_spec

Clock = Callable[[], datetime]


class Events(Protocol):
    """Where Kubernetes Events go (kopf's poster in production, a list in tests)."""

    def warning(self, reason: str, message: str) -> None: ...


class Reconciler:
    """Brings the children of one service to its spec and says how far they are."""

    def __init__(self, cluster: Cluster, events: Events, clock: Clock) -> None:
        self._cluster = cluster
        self._events = events
        self._clock = clock

    def reconcile(self, body: dict[str, Any]) -> dict[str, Any]:
        """Returns the status merge patch; empty when the status is already right."""
        identity = ServiceIdentity.from_body(body)
        previous: dict[str, Any] = dict(body.get("status") or {})
        try:
            spec = validated_spec(identity, dict(body.get("spec") or {}))
            children = render_children(identity, spec, _plan(previous))
            if _has_override(spec):
                self._dry_run(children)
        except InvalidSpec as invalid:
            return self._fail(identity, previous, reasons.INVALID_SPEC, str(invalid))
        try:
            applied = [self._cluster.apply(child) for child in children]
        except Rejected as rejected:
            return self._fail(identity, previous, reasons.APPLY_FAILED, str(rejected))
        if not spec.router.enabled and previous.get("router") is not None:
            self._remove_router(identity, spec)
        desired = reduce_status(
            previous, identity.generation, _observations(applied), _plan(previous), self._clock()
        )
        return status_patch(previous, desired)

    def _dry_run(self, children: list[dict[str, Any]]) -> None:
        """With a pod template override, let the apiserver judge every child before any is written."""
        for child in children:
            try:
                self._cluster.apply(child, dry_run=True)
            except Rejected as rejected:
                raise InvalidSpec(
                    f"the pod template override makes an invalid child: {rejected}"
                ) from rejected

    def _remove_router(self, identity: ServiceIdentity, spec: EnergyAwareLLMServiceSpec) -> None:
        for kind, api_version in (("Deployment", "apps/v1"), ("Service", "v1")):
            self._cluster.delete(
                ChildRef(api_version, kind, identity.namespace, identity.child_name("router"))
            )
        for manifest in router_discovery_rbac(identity, spec):
            self._cluster.delete(ChildRef.of(manifest))

    def _fail(
        self, identity: ServiceIdentity, previous: dict[str, Any], reason: str, message: str
    ) -> dict[str, Any]:
        patch = status_patch(
            previous, failed_status(previous, identity.generation, reason, message, self._clock())
        )
        if patch:
            self._events.warning(reason, message)
        return patch


def _has_override(spec: EnergyAwareLLMServiceSpec) -> bool:
    return spec.prefill.pod_template is not None or spec.decode.pod_template is not None


def _plan(status: dict[str, Any]) -> PlanStatus | None:
    """The planner's plan, when there is a readable one (a bad plan must not block reconciles)."""
    raw = status.get("plan")
    if not raw:
        return None
    try:
        return PlanStatus.model_validate(raw)
    except pydantic.ValidationError:
        return None


def _observations(applied: list[dict[str, Any]]) -> dict[Role, DeploymentObservation | None]:
    observed: dict[Role, DeploymentObservation | None] = {"prefill": None, "decode": None}
    for obj in applied:
        if obj.get("kind") != "Deployment":
            continue
        role = obj.get("metadata", {}).get("labels", {}).get(ROLE_LABEL)
        if role in ("prefill", "decode", "router"):
            observed[role] = DeploymentObservation.of(obj)
    return observed
