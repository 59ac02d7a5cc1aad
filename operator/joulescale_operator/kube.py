"""The one door to the apiserver for children: server-side apply and delete, errors mapped here.

Every write is a server-side apply under the operator's field manager (the planner's writes
under that name plus a suffix: status_owners.py, planned_replicas.py), with force unless the
caller wants another manager's hold on a field respected, so each writer owns exactly the
fields it sends; an apply of an unchanged manifest is a no-op on the server
(the resourceVersion stays). ApiException never leaves this module: a retryable failure
becomes ClusterUnavailable, a refusal becomes Rejected.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import urllib3.exceptions
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from joulescale.api import KIND, PLURAL
from joulescale_operator.identity import MANAGER
from joulescale_operator.render import ChildRef

_PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    KIND: PLURAL,
}
_RETRYABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
REQUEST_TIMEOUT_S = 30.0
POD_LIST_LIMIT = 50
"""A role's pods are read to explain it; the first page says as much as all of them."""
_TYPE_ERROR = "failed to create typed"
"""Server-side apply answers HTTP 500 "failed to create typed patch object" when a manifest does
not fit the kind's schema (a string where a list belongs): a refusal, not an outage."""
_ABSENT_IS_FINE = frozenset({"GET", "DELETE"})
"""Methods for which a 404 is an answer (nothing there), not an error."""


class ClusterError(Exception):
    """A call to the apiserver failed."""


class ClusterUnavailable(ClusterError):
    """Worth retrying: a conflict, throttling, an outage or a timeout."""


class Conflict(ClusterUnavailable):
    """HTTP 409: the object changed since it was read (a resourceVersion precondition failed)."""


class Rejected(ClusterError):
    """The apiserver refused the object (invalid, forbidden); retrying the same will not help."""


class Cluster(Protocol):
    """The reconciler's view of the cluster; tests use an in-memory implementation."""

    def get(self, ref: ChildRef) -> dict[str, Any] | None: ...

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, manager_suffix: str = "", force: bool = True
    ) -> dict[str, Any]: ...

    def manager(self, suffix: str = "") -> str:
        """The field manager of this operator's writes (with ``suffix``: one of its writers')."""
        ...

    def delete(self, ref: ChildRef) -> None: ...

    def apply_status(self, ref: ChildRef, status: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of the reconciler's part of a service's status (status_owners.py)."""
        ...

    def patch_status_json(self, ref: ChildRef, operations: list[dict[str, Any]]) -> None: ...

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]: ...


def object_path(ref: ChildRef) -> str:
    group_version = ref.api_version
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{prefix}/namespaces/{ref.namespace}/{_PLURALS[ref.kind]}/{ref.name}"


def map_api_error(status: int, detail: str, what: str) -> ClusterError:
    """The single translation of apiserver answers into the operator's two kinds of error;
    status 0 means no answer at all (connection refused, TLS failure, timeout)."""
    if status == 500 and _TYPE_ERROR in detail:
        return Rejected(f"{what}: {detail}")  # retrying the same manifest fails the same way
    if status == 409:
        return Conflict(f"{what}: HTTP 409: {detail}")
    if status in _RETRYABLE_STATUSES or status == 0:
        return ClusterUnavailable(f"{what}: HTTP {status}: {detail}")
    return Rejected(f"{what}: {detail}")


def _detail(body: bytes | str | None, fallback: str) -> str:
    """The apiserver's Status message, which names the offending field."""
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return fallback
    message = parsed.get("message") if isinstance(parsed, dict) else None
    return str(message or fallback)


class KubeCluster:
    """Cluster over the official client's ApiClient (synchronous: kopf runs sync handlers in threads)."""

    def __init__(self, api_client: ApiClient, field_manager: str = MANAGER) -> None:
        self._api = api_client
        self._field_manager = field_manager

    def get(self, ref: ChildRef) -> dict[str, Any] | None:
        """The object as stored, or None when there is none."""
        result = self._call("GET", ref, [], None)
        return result if isinstance(result, dict) else None

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, manager_suffix: str = "", force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply under the operator's field manager plus ``manager_suffix``. With
        ``force`` it takes the fields it sends from any other manager; without, a field another
        manager owns with another value is a Conflict. A ``metadata.resourceVersion`` in the
        manifest makes it apply only to that version (Conflict otherwise)."""
        ref = ChildRef.of(manifest)
        query: list[tuple[str, str]] = [("fieldManager", self.manager(manager_suffix))]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        result = self._call("PATCH", ref, query, manifest, content_type="application/apply-patch+yaml")
        return result if isinstance(result, dict) else {}

    def manager(self, suffix: str = "") -> str:
        return self._field_manager + suffix

    def delete(self, ref: ChildRef) -> None:
        """Delete a child; one already gone is fine."""
        self._call("DELETE", ref, [("propagationPolicy", "Background")], None)

    def apply_status(
        self,
        ref: ChildRef,
        status: dict[str, Any],
        *,
        manager_suffix: str = "",
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply of one writer's part of a service's status (status_owners.py), under
        the operator's field manager plus ``manager_suffix``: the apiserver merges it into the
        status as stored, and removes only what this writer sent before and omits now. With
        ``resource_version``, it applies only to that version of the object (Conflict otherwise).
        Returns the object as stored after it."""
        metadata: dict[str, Any] = {"name": ref.name, "namespace": ref.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        body = {"apiVersion": ref.api_version, "kind": ref.kind, "metadata": metadata, "status": status}
        query = [("fieldManager", self._field_manager + manager_suffix), ("force", "true")]
        result = self._call(
            "PATCH", ref, query, body, content_type="application/apply-patch+yaml", subresource="/status"
        )
        return result if isinstance(result, dict) else {}

    def patch_status_json(self, ref: ChildRef, operations: list[dict[str, Any]]) -> None:
        """A JSON patch (RFC 6902) of a service's status subresource; a failed test operation is
        Rejected (HTTP 422)."""
        self._call(
            "PATCH",
            ref,
            [("fieldManager", self._field_manager)],
            operations,
            content_type="application/json-patch+json",
            subresource="/status",
        )

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        """The pods of one namespace that carry every label of selector (at most POD_LIST_LIMIT)."""
        label_selector = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        query = [("labelSelector", label_selector), ("limit", str(POD_LIST_LIMIT))]
        result = self._call("GET", None, query, None, path=f"/api/v1/namespaces/{namespace}/pods")
        items = result.get("items") if isinstance(result, dict) else None
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    def ping(self) -> None:
        """Open a connection ahead of the first reconcile (TLS set-up is the slow part)."""
        self._call("GET", None, [], None)

    def _call(
        self,
        method: str,
        ref: ChildRef | None,
        query: list[tuple[str, str]],
        body: dict[str, Any] | list[dict[str, Any]] | None,
        content_type: str = "application/json",
        subresource: str = "",
        path: str = "/version",
    ) -> Any:
        what = f"{method} {ref.kind} {ref.namespace}/{ref.name}{subresource}" if ref else f"{method} {path}"
        _, url, headers, serialized, _ = self._api.param_serialize(
            method=method,
            resource_path=(object_path(ref) + subresource) if ref else path,
            query_params=query,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(
                method, url, header_params=headers, body=serialized, _request_timeout=REQUEST_TIMEOUT_S
            )
            data = response.read()  # type: ignore[no-untyped-call]
        except ApiException as error:
            if error.status == 404 and method in _ABSENT_IS_FINE:
                return None
            raise map_api_error(
                int(error.status or 0), _detail(error.body, str(error.reason)), what
            ) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise map_api_error(0, str(error), what) from error
        if 200 <= response.status < 300:
            return json.loads(data) if data else None
        if response.status == 404 and method in _ABSENT_IS_FINE:
            return None
        raise map_api_error(response.status, _detail(data, str(response.reason)), what)
