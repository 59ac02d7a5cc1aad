"""One reconcile of one service: validate, render, apply, reduce the status (no kopf here).

The cluster, the event sink, the clock and the renderer are injected, so the whole flow runs
in unit tests against an in-memory cluster. Retryable failures (ClusterUnavailable) propagate
to the handler boundary, which turns them into kopf.TemporaryError.

This is also the error boundary of one service: whatever validating or rendering it raises
(an InvalidSpec, or any exception a shape the model let through provokes) becomes Ready=False
with a reason and a Warning event, before any child is touched. One bad service never takes
the handlers or the resync of the others down with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import pydantic

from joulescale.api import EnergyAwareLLMServiceSpec, PlanStatus
from joulescale.profiles import ProfileCatalog, shipped_catalog
from joulescale_operator import reasons
from joulescale_operator.child_events import change_events, child_change
from joulescale_operator.dvfs import dvfs_condition, with_dvfs_condition
from joulescale_operator.identity import ROLE_LABEL, Role, ServiceIdentity
from joulescale_operator.kube import Cluster, Rejected
from joulescale_operator.ownership import describe, existing_children, foreign_among, is_controlled_by
from joulescale_operator.planned_replicas import (
    hand_over_created,
    hand_over_existing,
    without_planned_replicas,
)
from joulescale_operator.render import ChildRef, render_children, router_discovery_rbac
from joulescale_operator.role_pods import with_pod_problems
from joulescale_operator.status import (
    DeploymentObservation,
    failed_status,
    reduce_status,
    service_endpoint,
)
from joulescale_operator.status_owners import owned_changes, reconciler_status
from joulescale_operator.validation import InvalidSpec, validated_spec

Clock = Callable[[], datetime]
Renderer = Callable[[ServiceIdentity, EnergyAwareLLMServiceSpec, PlanStatus | None], list[dict[str, Any]]]
"""Spec -> child manifests; render_children in production, a seam for tests."""

MESSAGE_MAX_CHARS = 1000
logger = logging.getLogger(__name__)


class Events(Protocol):
    """Where Kubernetes Events go (kopf's poster in production, a list in tests)."""

    def warning(self, reason: str, message: str) -> None: ...

    def normal(self, reason: str, message: str) -> None: ...


class Reconciler:
    """Brings the children of one service to its spec and says how far they are."""

    def __init__(
        self,
        cluster: Cluster,
        events: Events,
        clock: Clock,
        render: Renderer = render_children,
        profiles: ProfileCatalog | None = None,
    ) -> None:
        self._cluster = cluster
        self._profiles = profiles if profiles is not None else shipped_catalog()
        self._events = events
        self._clock = clock
        self._render = render

    def reconcile(self, body: dict[str, Any]) -> dict[str, Any]:
        """Returns the changes of the reconciler's part of the status (status_owners.py; None:
        no longer there); empty when it is already right. The writer applies that part whole."""
        identity = ServiceIdentity.from_body(body)
        previous = _readable_status(body.get("status"))
        try:
            spec = validated_spec(identity, _mapping(body.get("spec")))
            children = self._render(identity, spec, _plan(previous))
        except InvalidSpec as invalid:
            return self._fail(identity, previous, reasons.INVALID_SPEC, str(invalid))
        except Exception as error:  # the boundary of one service: see the module's docstring
            message = f"the children could not be rendered from the spec: {type(error).__name__}: {error}"
            # Every resync meets the same failure again: the traceback only when debugging.
            logger.warning(
                "%s/%s: %s", identity.namespace, identity.name, message, exc_info=logger.isEnabledFor(logging.DEBUG)
            )
            return self._fail(identity, previous, reasons.RENDER_FAILED, message)
        try:
            existing = existing_children(self._cluster, children)
            foreign = foreign_among(identity, existing)
            if foreign:
                return self._fail(identity, previous, reasons.NOT_OWNED, describe(foreign))
            manifests = [without_planned_replicas(spec, child, existing) for child in children]
            if _has_override(spec):
                self._dry_run(manifests)
            hand_over_existing(self._cluster, spec, existing)
            applied = [self._cluster.apply(manifest) for manifest in manifests]
            applied = hand_over_created(self._cluster, spec, manifests, applied, existing)
        except InvalidSpec as invalid:
            return self._fail(identity, previous, reasons.INVALID_SPEC, str(invalid))
        except Rejected as rejected:
            return self._fail(identity, previous, reasons.APPLY_FAILED, str(rejected))
        self._announce(existing, children, applied)
        if not spec.router.enabled and previous.get("router") is not None:
            self._remove_router(identity, spec)
        now = self._clock()
        observed = with_pod_problems(self._cluster, identity, _observations(applied))
        desired = reduce_status(previous, identity.generation, observed, now)
        desired["endpoint"] = service_endpoint(identity, spec)
        desired, no_profile = with_dvfs_condition(
            previous, desired, dvfs_condition(spec, self._profiles, identity.generation, now)
        )
        if no_profile is not None:
            self._events.warning(reasons.NO_PROFILE, no_profile)
        return owned_changes(reconciler_status(previous), reconciler_status(desired))

    def _announce(
        self,
        existing: dict[ChildRef, dict[str, Any] | None],
        children: list[dict[str, Any]],
        applied: list[dict[str, Any]],
    ) -> None:
        """Normal events for the real changes of this reconcile (a no-op apply changes nothing)."""
        changes = [
            change
            for child, after in zip(children, applied, strict=True)
            if (change := child_change(existing.get(ChildRef.of(child)), after)) is not None
        ]
        for reason, message in change_events(changes):
            self._events.normal(reason, message)

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
            ref = ChildRef(api_version, kind, identity.namespace, identity.child_name("router"))
            self._delete_own(identity, ref)
        for manifest in router_discovery_rbac(identity, spec):
            self._delete_own(identity, ChildRef.of(manifest))

    def _delete_own(self, identity: ServiceIdentity, ref: ChildRef) -> None:
        """Delete a child only while it is still ours: an object of that name may be someone else's."""
        existing = self._cluster.get(ref)
        if existing is not None and is_controlled_by(existing, identity):
            self._cluster.delete(ref)

    def _fail(
        self, identity: ServiceIdentity, previous: dict[str, Any], reason: str, message: str
    ) -> dict[str, Any]:
        message = message[:MESSAGE_MAX_CHARS]
        failed = {**previous, **failed_status(previous, identity.generation, reason, message, self._clock())}
        patch = owned_changes(reconciler_status(previous), reconciler_status(failed))
        if patch:
            self._events.warning(reason, message)
        return patch


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _readable_status(raw: Any) -> dict[str, Any]:
    """The previous status, minus what is not ours to trust: others write status too (the planner,
    anyone allowed to patch the subresource), and a mangled condition must not break the reconcile."""
    status = _mapping(raw)
    conditions = status.get("conditions")
    if conditions is not None:
        status["conditions"] = (
            [c for c in conditions if isinstance(c, dict) and isinstance(c.get("type"), str)]
            if isinstance(conditions, list)
            else []
        )
    return status


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
