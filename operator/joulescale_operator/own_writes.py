"""Which child events the operator caused itself, so that watching its children does not make
it reconcile after its own applies.

Creating a service's children produces an ADDED event per child; reconciling on each would
multiply the work of every create (and delay the next service) for nothing. Every applied
child's resourceVersion is remembered here: an event carrying that version is the operator's
own write. Anything else (a controller updating a Deployment's status, a user's edit, a
deletion) bears a newer version and is reconciled.
"""

from __future__ import annotations

import threading
from typing import Any

from joulescale_operator.kube import Cluster
from joulescale_operator.render import ChildRef


class OwnWrites:
    """A Cluster that forwards every call and remembers the resourceVersion of its applies."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._versions: dict[ChildRef, str] = {}
        self._lock = threading.Lock()

    def get(self, ref: ChildRef) -> dict[str, Any] | None:
        return self._cluster.get(ref)

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, manager_suffix: str = "", force: bool = True
    ) -> dict[str, Any]:
        applied = self._cluster.apply(manifest, dry_run=dry_run, manager_suffix=manager_suffix, force=force)
        version = applied.get("metadata", {}).get("resourceVersion")
        if not dry_run and version:
            with self._lock:
                self._versions[ChildRef.of(manifest)] = str(version)
        return applied

    def manager(self, suffix: str = "") -> str:
        return self._cluster.manager(suffix)

    def delete(self, ref: ChildRef) -> None:
        self._cluster.delete(ref)
        self.forget(ref)

    def apply_status(self, ref: ChildRef, status: dict[str, Any]) -> dict[str, Any]:
        return self._cluster.apply_status(ref, status)

    def patch_status_json(self, ref: ChildRef, operations: list[dict[str, Any]]) -> None:
        self._cluster.patch_status_json(ref, operations)

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        return self._cluster.list_pods(namespace, selector)

    def is_own(self, ref: ChildRef, resource_version: str | None) -> bool:
        with self._lock:
            return resource_version is not None and self._versions.get(ref) == resource_version

    def forget(self, ref: ChildRef) -> None:
        with self._lock:
            self._versions.pop(ref, None)
