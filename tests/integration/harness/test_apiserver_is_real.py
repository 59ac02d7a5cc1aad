"""The apiserver tier is a real kube-apiserver: CRDs, RBAC and tokens behave as in a cluster."""

from __future__ import annotations

import json

import pytest

from e2e.harness.controlplane import ControlPlane

pytestmark = pytest.mark.integration

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.harness.joulescale.io
spec:
  group: harness.joulescale.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer, minimum: 1}
"""


def test_kubectl_applies_a_namespace_and_a_crd_that_then_validates(apiserver: ControlPlane) -> None:
    apiserver.kubectl(
        "apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata: {name: harness-ns}\n"
    )
    apiserver.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    apiserver.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.harness.joulescale.io", "--timeout=30s"
    )

    good = "apiVersion: harness.joulescale.io/v1\nkind: Widget\nmetadata: {name: ok, namespace: harness-ns}\nspec: {size: 2}\n"
    bad = good.replace("name: ok", "name: bad").replace("size: 2", "size: 0")
    apiserver.kubectl("apply", "-f", "-", input=good)
    rejected = apiserver.kubectl("apply", "-f", "-", input=bad, check=False)

    assert rejected.returncode != 0
    assert "spec.size" in rejected.stderr
    names = json.loads(apiserver.kubectl("get", "widgets", "-n", "harness-ns", "-o", "json").stdout)["items"]
    assert [item["metadata"]["name"] for item in names] == ["ok"]


def test_rbac_forbids_an_unprivileged_service_account_from_listing_secrets(apiserver: ControlPlane) -> None:
    namespace = apiserver.create_namespace("rbac")
    apiserver.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    apiserver.kubectl("create", "secret", "generic", "s1", "--from-literal=k=v", "-n", namespace)
    token = apiserver.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()

    as_nobody = apiserver.kubectl(
        "get", "secrets", "-n", namespace, check=False, kubeconfig=apiserver.token_kubeconfig(token)
    )
    as_admin = apiserver.kubectl("get", "secrets", "-n", namespace, "-o", "name")

    assert as_nobody.returncode != 0
    assert "forbidden" in as_nobody.stderr.lower()
    assert f"system:serviceaccount:{namespace}:nobody" in as_nobody.stderr
    assert "secret/s1" in as_admin.stdout


def test_the_server_reports_the_pinned_kubernetes_version(apiserver: ControlPlane) -> None:
    from e2e.harness import versions

    reported = json.loads(apiserver.kubectl("version", "-o", "json").stdout)

    assert reported["serverVersion"]["gitVersion"] == versions.KUBERNETES_VERSION
    assert reported["clientVersion"]["gitVersion"] == versions.KUBERNETES_VERSION
