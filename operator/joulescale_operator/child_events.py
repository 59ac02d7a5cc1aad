"""Which real change an apply made to a child, for a Normal event on the service (pure).

Every reconcile applies every child; server-side apply leaves an unchanged object alone, so
comparing the object before the apply with the apply's answer tells a creation, a scale and
an update from a no-op. A Deployment's resourceVersion also moves when its controller writes
its status, so for Deployments the spec and the labels and annotations are compared instead.
"""

from __future__ import annotations

from typing import Any

from joulescale_operator import reasons


def child_change(before: dict[str, Any] | None, after: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, what changed) from before to after, or None when nothing changed; the reason is
    also the verb of the event's message (see change_events)."""
    kind = str(after.get("kind", "object"))
    name = str(_mapping(after.get("metadata")).get("name", "?"))
    what = f"{kind} {name}"
    if before is None:
        return reasons.CHILD_CREATED, what
    if kind == "Deployment":
        return _deployment_change(before, after, what)
    if _version(before) != _version(after):
        return reasons.CHILD_UPDATED, what
    return None


def change_events(changes: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One (reason, message) per reason, naming every child it concerns: a new service posts one
    Created event, not one per child (events are objects in etcd too)."""
    by_reason: dict[str, list[str]] = {}
    for reason, what in changes:
        by_reason.setdefault(reason, []).append(what)
    return [(reason, f"{reason} {', '.join(whats)}.") for reason, whats in by_reason.items()]


def _deployment_change(before: dict[str, Any], after: dict[str, Any], what: str) -> tuple[str, str] | None:
    old_spec, new_spec = dict(_mapping(before.get("spec"))), dict(_mapping(after.get("spec")))
    old_replicas, new_replicas = old_spec.pop("replicas", None), new_spec.pop("replicas", None)
    scaled = f"from {old_replicas} to {new_replicas} replicas" if old_replicas != new_replicas else ""
    if old_spec != new_spec or _labels_and_annotations(before) != _labels_and_annotations(after):
        return reasons.CHILD_UPDATED, f"{what} (scaled {scaled})" if scaled else what
    if scaled:
        return reasons.CHILD_SCALED, f"{what} {scaled}"
    return None


_CONTROLLER_ANNOTATIONS = "deployment.kubernetes.io/"
"""The Deployment controller's own annotations (the revision): its writes, not ours."""


def _labels_and_annotations(obj: dict[str, Any]) -> tuple[Any, Any]:
    meta = _mapping(obj.get("metadata"))
    annotations = {
        key: value
        for key, value in _mapping(meta.get("annotations")).items()
        if not key.startswith(_CONTROLLER_ANNOTATIONS)
    }
    return meta.get("labels"), annotations


def _version(obj: dict[str, Any]) -> Any:
    return _mapping(obj.get("metadata")).get("resourceVersion")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
