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

Operators before this split merge-patched the status, which owns nothing of its own in
server-side apply's terms, so what they wrote stays when its owner stops sending it (RouterReady
once the router is off). After each apply, what the writer owns yet did not send and is still
stored is removed with a JSON patch that first tests the resourceVersion the apply returned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final, Protocol

from joulescale_operator import reasons
from joulescale_operator.kube import Rejected
from joulescale_operator.render import ChildRef

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Owner:
    """The fields of the status one writer owns."""

    fields: tuple[str, ...]
    """Top-level fields, owned whole."""
    roles: tuple[str, ...]
    role_fields: tuple[str, ...]
    """Fields of status.<role> for each of roles."""
    conditions: frozenset[str]
    """Condition types."""

    def stored(self, status: dict[str, Any] | None) -> dict[str, Any]:
        """This owner's fields as they are in ``status`` (absent: not there)."""
        status = status or {}
        owned: dict[str, Any] = {k: status[k] for k in self.fields if status.get(k) is not None}
        for role in self.roles:
            found = status.get(role)
            fields = {k: found[k] for k in self.role_fields if k in found} if isinstance(found, dict) else {}
            if fields:
                owned[role] = fields
        raw = status.get("conditions")
        listed = raw if isinstance(raw, list) else []
        conditions = [c for c in listed if isinstance(c, dict) and c.get("type") in self.conditions]
        if conditions:
            owned["conditions"] = conditions
        return owned


RECONCILER: Final = Owner(
    fields=("observedGeneration", "endpoint"),
    roles=("prefill", "decode", "router"),
    role_fields=("replicas", "readyReplicas", "readyOfDesired"),
    conditions=frozenset(
        {
            reasons.READY,
            reasons.PREFILL_READY,
            reasons.DECODE_READY,
            reasons.ROUTER_READY,
            reasons.DEGRADED,
            reasons.DVFS_ACTIVE,
        }
    ),
)
PLANNER: Final = Owner(
    fields=("plan", "energy"), roles=("prefill", "decode"), role_fields=("baseClockMHz",),
    conditions=frozenset({reasons.PLANNED}),
)
PLANNER_MANAGER_SUFFIX: Final = "-planner"
"""The planner's field manager is the operator's with this suffix (the reconciler's is the operator's)."""


def reconciler_status(status: dict[str, Any] | None) -> dict[str, Any]:
    """The reconciler's part of a status, as its server-side apply sends it (absent: not sent)."""
    return RECONCILER.stored(status)


def planner_status(status: dict[str, Any] | None) -> dict[str, Any]:
    """The planner's part of a status, as its server-side apply sends it; the roles' clocks are
    the plan's, whatever status.<role> says (an older writer may have put another there)."""
    status = status or {}
    plan = status.get("plan")
    roles = {}
    for role in PLANNER.roles:
        clock = plan.get(f"{role}BaseClockMHz") if isinstance(plan, dict) else None
        roles[role] = {"baseClockMHz": clock} if clock is not None else {}
    return PLANNER.stored({**status, **roles})


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


class JsonPatcher(Protocol):
    def patch_status_json(self, ref: ChildRef, operations: list[dict[str, Any]]) -> None: ...


def leftover_removals(stored: dict[str, Any], sent: dict[str, Any], owner: Owner) -> list[dict[str, Any]]:
    """JSON patch operations removing what ``owner`` owns in the stored object's status but did
    not send (empty: nothing left, the usual case); they apply only to the stored
    resourceVersion, and every condition removal tests the type at its index."""
    raw_status = stored.get("status")
    status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    have = owner.stored(status)
    operations: list[dict[str, Any]] = []
    for key, value in have.items():
        if key == "conditions":
            continue
        kept = sent.get(key)
        if key not in owner.roles:
            if kept is None:
                operations.append({"op": "remove", "path": f"/status/{key}"})
            continue
        gone = set(value) - set(kept if isinstance(kept, dict) else {})
        if gone and gone == set(status[key]):
            operations.append({"op": "remove", "path": f"/status/{key}"})
        else:
            operations += [{"op": "remove", "path": f"/status/{key}/{field}"} for field in sorted(gone)]
    sent_types = {c.get("type") for c in sent.get("conditions", [])}
    gone_types = {c["type"] for c in have.get("conditions", [])} - sent_types
    raw = status.get("conditions")
    listed = raw if isinstance(raw, list) else []
    for index in reversed(range(len(listed))):  # from the end: a removal shifts only later entries
        entry = listed[index]
        if isinstance(entry, dict) and entry.get("type") in gone_types:
            path = f"/status/conditions/{index}"
            operations += [{"op": "test", "path": f"{path}/type", "value": entry["type"]},
                           {"op": "remove", "path": path}]
    if not operations:
        return []
    version = str((stored.get("metadata") or {}).get("resourceVersion", ""))
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": version}, *operations]


def remove_leftovers(
    cluster: JsonPatcher, ref: ChildRef, stored: dict[str, Any], sent: dict[str, Any], owner: Owner
) -> None:
    """Remove what an older writer left of ``owner``'s fields; a status that moved meanwhile (a
    failed test) is left to the writer's next write."""
    operations = leftover_removals(stored, sent, owner)
    if not operations:
        return
    try:
        cluster.patch_status_json(ref, operations)
    except Rejected as rejected:
        logger.info("%s/%s: status leftovers kept until the next write: %s", ref.namespace, ref.name, rejected)
