"""Conditions per the Kubernetes API conventions: set one, keep its transition time if unchanged."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str, status: ConditionStatus, reason: str, message: str, generation: int, now: datetime
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": rfc3339(now),
        "observedGeneration": generation,
    }


def set_condition(conditions: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Replace the condition of new's type; lastTransitionTime moves only when status changes."""
    result = []
    found = False
    for existing in conditions:
        if existing.get("type") != new["type"]:
            result.append(existing)
            continue
        found = True
        if existing.get("status") == new["status"] and "lastTransitionTime" in existing:
            new = {**new, "lastTransitionTime": existing["lastTransitionTime"]}
        result.append(new)
    if not found:
        result.append(new)
    return result


def find(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def remove_condition(conditions: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    """Drop the condition of a type that no longer applies (RouterReady once the router is gone)."""
    return [c for c in conditions if c.get("type") != type_]
