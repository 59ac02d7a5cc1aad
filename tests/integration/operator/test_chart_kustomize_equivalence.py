"""The kustomize manifests are the chart with default values, object for object: rendered by the
real helm and kubectl and compared whole (roles, bindings, Deployment, DaemonSet, Service,
monitor, CRD, namespace), after removing only the labels that Helm alone adds."""

from __future__ import annotations

import difflib
from typing import Any

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from tests.integration.operator.test_chart_privileges import CHART, RELEASE_NAMESPACE, kustomize

pytestmark = pytest.mark.integration

RELEASE = "joulescale"
"""The release name that gives the chart's objects the names the manifests use."""
HELM_ONLY_LABELS = {"app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}
PROMETHEUS_OPERATOR_APIS = tuple(
    option
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule")
    for option in ("--api-versions", f"monitoring.coreos.com/v1/{kind}")
)

Key = tuple[str, str, str]


def chart(plane: ControlPlane, *options: str) -> list[dict[str, Any]]:
    out = plane.helm(
        "template", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--include-crds", *options
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _strip_helm_labels(metadata: dict[str, Any] | None) -> int:
    if not metadata or "labels" not in metadata:
        return 0
    before = len(metadata["labels"])
    metadata["labels"] = {k: v for k, v in metadata["labels"].items() if k not in HELM_ONLY_LABELS}
    return before - len(metadata["labels"])


def by_key(documents: list[dict[str, Any]]) -> tuple[dict[Key, dict[str, Any]], int]:
    """Objects by (kind, namespace, name), without Helm's own labels; and how many were removed."""
    objects: dict[Key, dict[str, Any]] = {}
    removed = 0
    for doc in documents:
        removed += _strip_helm_labels(doc["metadata"])
        template = doc.get("spec", {}).get("template") if isinstance(doc.get("spec"), dict) else None
        if isinstance(template, dict):
            removed += _strip_helm_labels(template.get("metadata"))
        key = (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
        assert key not in objects, f"{key} rendered twice"
        objects[key] = doc
    return objects, removed


def assert_same_objects(helm: list[dict[str, Any]], manifests: list[dict[str, Any]]) -> set[str]:
    ours, removed = by_key(helm)
    theirs, none_removed = by_key(manifests)
    assert removed > 0, "the chart's Helm labels were not found: the normalisation compares nothing"
    assert none_removed == 0, "the manifests carry labels of Helm"
    assert sorted(set(ours) - set(theirs)) == [], "in the chart only"
    assert sorted(set(theirs) - set(ours)) == [], "in the manifests only"
    for key, obj in ours.items():
        if obj != theirs[key]:
            diff = difflib.unified_diff(
                yaml.safe_dump(obj, sort_keys=True).splitlines(),
                yaml.safe_dump(theirs[key], sort_keys=True).splitlines(),
                "chart",
                "manifests",
                lineterm="",
            )
            pytest.fail(f"{key} differs:\n" + "\n".join(diff))
    return {kind for kind, _namespace, _name in ours}


def test_the_kustomize_base_is_the_chart_with_default_values(crd_plane: ControlPlane) -> None:
    # The base ships its Namespace (with the chart's Pod Security labels); the chart renders it
    # only when asked, and that option adds the Namespace and changes nothing else.
    default, with_namespace = chart(crd_plane), chart(crd_plane, "--set", "namespace.create=true")
    assert [d for d in with_namespace if d["kind"] != "Namespace"] == default
    kinds = assert_same_objects(with_namespace, kustomize(crd_plane, "base"))
    assert kinds == {
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "DaemonSet",
        "Service",
    }


def test_the_namespaced_overlay_is_the_chart_watching_its_namespace(crd_plane: ControlPlane) -> None:
    watching = chart(
        crd_plane, "--set", "namespace.create=true", "--set", "operator.watchNamespaces={llm-serving}"
    )
    kinds = assert_same_objects(watching, kustomize(crd_plane, "namespaced"))
    assert {"Role", "RoleBinding"} <= kinds


def test_the_monitoring_overlay_is_the_chart_where_prometheus_operator_runs(crd_plane: ControlPlane) -> None:
    # The chart's monitors, alerts and dashboard need the Prometheus Operator's CRDs: absent,
    # none is rendered.
    monitoring_kinds = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}
    assert [d for d in chart(crd_plane) if d["kind"] in monitoring_kinds - {"ConfigMap"}] == []
    assert [d for d in chart(crd_plane) if d["metadata"]["name"] == "joulescale-dashboard"] == []
    monitored = chart(crd_plane, "--set", "namespace.create=true", *PROMETHEUS_OPERATOR_APIS)
    kinds = assert_same_objects(monitored, kustomize(crd_plane, "monitoring"))
    assert monitoring_kinds <= kinds
    (monitor,) = [d for d in monitored if d["kind"] == "ServiceMonitor"]
    (service,) = [d for d in monitored if d["kind"] == "Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
