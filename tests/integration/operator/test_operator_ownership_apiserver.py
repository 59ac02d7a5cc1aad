"""The operator never adopts or rewrites an object it did not create (real kube-apiserver).

An admin's Role and RoleBinding named like the SGLang router's, and a Deployment named like a
child, stay exactly as the admin wrote them; the service says which object is in the way.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import OperatorProcess, apply, condition, get, service_manifest

pytestmark = pytest.mark.integration

REACTION_S = 30.0


def sglang_with_router(name: str, namespace: str) -> dict[str, Any]:
    return service_manifest(
        name,
        namespace,
        engine={"name": "sglang", "image": "lmsysorg/sglang:v0.5.2-cu126"},
        kvTransfer={"backend": "mooncake"},
        router={"enabled": True, "image": "lmsysorg/sglang:v0.5.2-cu126"},
    )


def refused(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    ready = condition(get(plane, "eals", name, namespace), "Ready")
    return ready if ready and ready["reason"] == "ChildNotOwned" else None


def untouched(before: dict[str, Any], after: dict[str, Any] | None) -> bool:
    return after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_an_admins_role_rolebinding_and_deployment_are_never_rewritten(
    crd_plane: ControlPlane, operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("owned")
    crd_plane.kubectl("create", "role", "svc-router", "--verb=get", "--resource=secrets", "-n", namespace)
    crd_plane.kubectl(
        "create", "rolebinding", "svc-router", "--role=svc-router", "--user=alice", "-n", namespace
    )
    crd_plane.kubectl("create", "deployment", "web-decode", "--image=nginx", "-n", namespace)
    # Even with the operator's label: a label is no proof of who made an object.
    crd_plane.kubectl(
        "label",
        "deployment",
        "web-decode",
        "app.kubernetes.io/managed-by=joulescale-operator",
        "-n",
        namespace,
    )
    theirs = {
        (kind, name): get(crd_plane, kind, name, namespace)
        for kind, name in (
            ("role", "svc-router"),
            ("rolebinding", "svc-router"),
            ("deployment", "web-decode"),
        )
    }
    apply(crd_plane, sglang_with_router("svc", namespace))
    apply(crd_plane, service_manifest("web", namespace))

    svc = crd_plane.wait_for(lambda: refused(crd_plane, namespace, "svc"), timeout_s=REACTION_S)
    web = crd_plane.wait_for(lambda: refused(crd_plane, namespace, "web"), timeout_s=REACTION_S)
    assert svc["status"] == "False"
    assert f"Role {namespace}/svc-router" in svc["message"]
    assert f"RoleBinding {namespace}/svc-router" in svc["message"]
    assert f"Deployment {namespace}/web-decode" in web["message"]
    for name in ("svc", "web"):
        out = crd_plane.kubectl(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
        )
        assert any(e["reason"] == "ChildNotOwned" for e in json.loads(out.stdout)["items"]), name
    # No child of either service was written, and a few resyncs later the admin's objects are as they were.
    assert get(crd_plane, "deployment", "svc-prefill", namespace) is None
    assert get(crd_plane, "deployment", "web-prefill", namespace) is None
    operator_resyncs_s = 3 * operator.resync_interval_s

    time.sleep(operator_resyncs_s)
    for (kind, name), before in theirs.items():
        assert before is not None
        after = get(crd_plane, kind, name, namespace)
        assert untouched(before, after), f"{kind}/{name} was rewritten"
        assert after is not None
        assert not after["metadata"].get("ownerReferences"), f"{kind}/{name} was adopted"

    # Once the admin removes their objects, the services get their children.
    crd_plane.kubectl("delete", "role,rolebinding", "svc-router", "-n", namespace)
    crd_plane.kubectl("delete", "deployment", "web-decode", "-n", namespace)
    crd_plane.wait_for(lambda: get(crd_plane, "role", "svc-router", namespace), timeout_s=REACTION_S)
    crd_plane.wait_for(lambda: get(crd_plane, "deployment", "web-decode", namespace), timeout_s=REACTION_S)
