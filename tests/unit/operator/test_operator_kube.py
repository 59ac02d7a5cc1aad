"""The apiserver boundary: paths per kind and the one error map."""

from __future__ import annotations

import pytest

from joulescale_operator.kube import ClusterUnavailable, Rejected, map_api_error, object_path
from joulescale_operator.render import ChildRef


@pytest.mark.parametrize(
    ("api_version", "kind", "path"),
    [
        ("apps/v1", "Deployment", "/apis/apps/v1/namespaces/ns/deployments/x"),
        ("v1", "Service", "/api/v1/namespaces/ns/services/x"),
        (
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings/x",
        ),
    ],
)
def test_object_paths_follow_the_api_groups(api_version: str, kind: str, path: str) -> None:
    assert object_path(ChildRef(api_version, kind, "ns", "x")) == path


@pytest.mark.parametrize("status", [0, 409, 429, 500, 503, 504])
def test_conflicts_throttling_and_outages_are_retryable(status: int) -> None:
    assert isinstance(map_api_error(status, "busy", "PATCH x"), ClusterUnavailable)


@pytest.mark.parametrize("status", [400, 403, 422])
def test_refusals_are_not_retried_and_keep_the_apiserver_message(status: int) -> None:
    error = map_api_error(status, "spec.replicas: Invalid value", "PATCH Deployment ns/x")
    assert isinstance(error, Rejected)
    assert "spec.replicas: Invalid value" in str(error)


def test_a_manifest_that_does_not_fit_the_schema_is_refused_not_retried() -> None:
    """Server-side apply reports a type error as HTTP 500; retrying the same manifest cannot help."""
    detail = (
        "failed to create typed patch object (ns/x-decode; apps/v1, Kind=Deployment): "
        ".spec.template.spec.containers: expected list, got &{x}"
    )
    assert isinstance(map_api_error(500, detail, "PATCH Deployment ns/x-decode"), Rejected)
