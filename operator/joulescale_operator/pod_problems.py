"""Why a role's pods are not ready, read from the pods themselves (pure).

A Deployment only counts ready replicas; the reason a replica is missing lives on its pods:
the scheduler's PodScheduled=False message of a Pending pod (`0/3 nodes are available: 3
Insufficient nvidia.com/gpu`, an untolerated taint), or a container that waits in a state it
will not leave on its own (an image that cannot be pulled, a crash loop). The operator reads
a role's pods only while the role is not ready, and reduces them to one problem here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from joulescale_operator import reasons

MESSAGE_MAX_CHARS = 500
"""A scheduler message lists every node group; a condition carries the first part of it."""

STUCK_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
"""Container waiting reasons that need a person: the kubelet retries them forever."""


@dataclass(frozen=True, slots=True)
class PodProblem:
    """The one thing a role's condition says about its pods."""

    reason: str
    message: str


def pods_problem(pods: list[dict[str, Any]]) -> PodProblem | None:
    """The problem of the first unschedulable pod, else of the first stuck container, else None.

    Scheduling comes first: a pod that is not placed never reaches its containers."""
    unschedulable = [(pod, found) for pod in pods if (found := _unscheduled(pod)) is not None]
    if unschedulable:
        first, (reason, message) = unschedulable[0]
        count = len(unschedulable)
        who = f"pod {_name(first)}" if count == 1 else f"{count} pods (first {_name(first)})"
        return PodProblem(reason, _clip(f"{who} cannot be scheduled: {message}"))
    for pod in pods:
        stuck = _stuck_container(pod)
        if stuck is not None:
            return PodProblem(stuck[0], _clip(f"pod {_name(pod)}: {stuck[1]}"))
    return None


def pods_of_deployment(pods: list[dict[str, Any]], deployment: str) -> list[dict[str, Any]]:
    """The pods that a ReplicaSet of the named Deployment controls (`<deployment>-<hash>`): a pod
    made by hand with the role's labels says nothing about the role."""
    prefix = f"{deployment}-"
    return [
        pod
        for pod in pods
        if any(
            isinstance(owner, dict)
            and owner.get("controller") is True
            and owner.get("kind") == "ReplicaSet"
            and str(owner.get("name", "")).startswith(prefix)
            for owner in _list(_mapping(pod.get("metadata")).get("ownerReferences"))
        )
    ]


def _unscheduled(pod: dict[str, Any]) -> tuple[str, str] | None:
    status = _mapping(pod.get("status"))
    if status.get("phase", "Pending") != "Pending" or _mapping(pod.get("metadata")).get("deletionTimestamp"):
        return None
    for cond in _list(status.get("conditions")):
        if isinstance(cond, dict) and cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            reason = cond.get("reason")
            message = cond.get("message")
            return (
                reason if isinstance(reason, str) and reason else reasons.UNSCHEDULABLE,
                message if isinstance(message, str) and message else "no reason given by the scheduler",
            )
    return None


def _stuck_container(pod: dict[str, Any]) -> tuple[str, str] | None:
    status = _mapping(pod.get("status"))
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in _list(status.get(key)):
            if not isinstance(container, dict):
                continue
            waiting = _mapping(_mapping(container.get("state")).get("waiting"))
            reason = waiting.get("reason")
            if reason in STUCK_WAITING_REASONS:
                detail = waiting.get("message")
                text = f"container {container.get('name', '?')} is waiting in {reason}"
                return str(reason), f"{text}: {detail}" if isinstance(detail, str) and detail else text
    return None


def _name(pod: dict[str, Any]) -> str:
    return str(_mapping(pod.get("metadata")).get("name", "?"))


def _clip(message: str) -> str:
    return message if len(message) <= MESSAGE_MAX_CHARS else message[: MESSAGE_MAX_CHARS - 3] + "..."


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
