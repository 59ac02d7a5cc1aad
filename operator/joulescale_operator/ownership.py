"""The operator never adopts or rewrites an object it did not create (pure, over a Cluster).

Server-side apply with force takes over any object of the same name, so a child name that an
admin or a tenant already used (a Role, a RoleBinding, a Deployment) would be rewritten and
adopted. Before applying, every child that already exists must carry this service's controller
owner reference (same uid): a label is writable by anyone who can create the object, the uid of
the owning service is not something a stranger's object carries by accident.
"""

from __future__ import annotations

from typing import Any

from joulescale.api import KIND
from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.kube import Cluster
from joulescale_operator.render import ChildRef


def is_controlled_by(obj: dict[str, Any], identity: ServiceIdentity) -> bool:
    """True when obj's controller owner reference is this very service (not one of the same name)."""
    metadata = obj.get("metadata")
    references = metadata.get("ownerReferences") if isinstance(metadata, dict) else None
    if not isinstance(references, list):
        return False
    return any(
        isinstance(reference, dict)
        and reference.get("controller") is True
        and reference.get("kind") == KIND
        and reference.get("uid") == identity.uid
        for reference in references
    )


def existing_children(cluster: Cluster, children: list[dict[str, Any]]) -> dict[ChildRef, dict[str, Any] | None]:
    """Each child's object as stored now (None when absent), read once per reconcile."""
    return {ChildRef.of(child): cluster.get(ChildRef.of(child)) for child in children}


def foreign_among(identity: ServiceIdentity, existing: dict[ChildRef, dict[str, Any] | None]) -> list[ChildRef]:
    """The refs whose stored object this service does not control."""
    return [ref for ref, obj in existing.items() if obj is not None and not is_controlled_by(obj, identity)]


def describe(refs: list[ChildRef]) -> str:
    names = ", ".join(f"{ref.kind} {ref.namespace}/{ref.name}" for ref in refs)
    return (
        f"{names} already exist{'s' if len(refs) == 1 else ''} and {'is' if len(refs) == 1 else 'are'} "
        "not controlled by this service; the operator leaves it alone and creates no child until it is "
        "removed or the service is renamed"
    )
