"""Who writes which part of a service's status: two writers, one owner per field.

The reconciler (reconcile.py, run by kopf's handlers and the resync) and the planner loop
(planloop/) both write the status subresource, at their own pace, each from a copy of the
service that may predate the other's last write. A merge patch replaces a list whole, so a
writer that sent the conditions list of an old copy rolled the other's conditions back until
its next pass (issue 16's stale reconcile). Instead each writer sends only what it owns, as a
server-side apply under its own field manager: the CRD declares ``conditions`` a map list keyed
by ``type``, so the apiserver merges each writer's conditions into the list as stored, and a
field a writer stops sending goes away only when that writer owned it. No copy of the other
writer's fields is ever sent, so no copy of them can be stale.

The owners:

- reconciler: ``observedGeneration``, ``endpoint``; per role (prefill, decode, router)
  ``replicas``, ``readyReplicas``, ``readyOfDesired``; the conditions Ready, PrefillReady,
  DecodeReady, RouterReady, Degraded and DVFSActive (whether the agents have profiles: a
  property of the spec and the profile catalog, not of the plan).
- planner: ``plan``, ``energy``, the Planned condition, and per engine role ``baseClockMHz``
  (the plan's clock, written in the same request as the plan it comes from).

A condition type neither writer knows (somebody else's) is left to its writer.
"""

from __future__ import annotations

from typing import Any, Final

from joulescale_operator import reasons

RECONCILER_CONDITIONS: Final = frozenset(
    {
        reasons.READY,
        reasons.PREFILL_READY,
        reasons.DECODE_READY,
        reasons.ROUTER_READY,
        reasons.DEGRADED,
        reasons.DVFS_ACTIVE,
    }
)
PLANNER_CONDITIONS: Final = frozenset({reasons.PLANNED})
RECONCILER_FIELDS: Final = ("observedGeneration", "endpoint")
PLANNER_FIELDS: Final = ("plan", "energy")
ROLE_FIELDS: Final = ("replicas", "readyReplicas", "readyOfDesired")
"""The reconciler's fields of status.<role>; baseClockMHz there is the planner's."""
RECONCILED_ROLES: Final = ("prefill", "decode", "router")
PLANNED_ROLES: Final = ("prefill", "decode")
PLANNER_MANAGER_SUFFIX: Final = "-planner"
"""The planner's field manager is the operator's with this suffix (the reconciler's is the operator's)."""


def reconciler_status(status: dict[str, Any] | None) -> dict[str, Any]:
    """The reconciler's part of a status, as its server-side apply sends it (absent: not sent)."""
    status = status or {}
    owned: dict[str, Any] = {k: status[k] for k in RECONCILER_FIELDS if status.get(k) is not None}
    for role in RECONCILED_ROLES:
        fields = status.get(role)
        if isinstance(fields, dict):
            owned[role] = {k: fields[k] for k in ROLE_FIELDS if k in fields}
    conditions = _conditions(status, RECONCILER_CONDITIONS)
    if conditions:
        owned["conditions"] = conditions
    return owned


def planner_status(status: dict[str, Any] | None) -> dict[str, Any]:
    """The planner's part of a status, as its server-side apply sends it; the roles' clocks are
    the plan's, whatever status.<role> says (an older writer may have put another there)."""
    status = status or {}
    owned: dict[str, Any] = {k: status[k] for k in PLANNER_FIELDS if status.get(k) is not None}
    plan = status.get("plan")
    for role in PLANNED_ROLES:
        clock = plan.get(f"{role}BaseClockMHz") if isinstance(plan, dict) else None
        if clock is not None:
            owned[role] = {"baseClockMHz": clock}
    conditions = _conditions(status, PLANNER_CONDITIONS)
    if conditions:
        owned["conditions"] = conditions
    return owned


def owned_changes(previous: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The top-level keys whose owned value differs (None: no longer sent); empty: nothing to write."""
    return {
        key: desired.get(key)
        for key in sorted(set(previous) | set(desired))
        if previous.get(key) != desired.get(key)
    }


def with_changes(owned: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """What a writer applies: its part of the status as it was, with its changes."""
    merged = {**owned, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def _conditions(status: dict[str, Any], types: frozenset[str]) -> list[dict[str, Any]]:
    raw = status.get("conditions")
    found = raw if isinstance(raw, list) else []
    return [c for c in found if isinstance(c, dict) and c.get("type") in types]
