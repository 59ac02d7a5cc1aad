"""One bad service never stops the operator: against the real kube-apiserver, services with
malformed pod templates fail alone (Ready=False with a reason, an event, no child), while the
resync keeps bringing back the deleted children of a good service next to them.

The malformed templates are ones today's CRD stores (preserve-unknown-fields). Should the schema
come to reject some at the apiserver, those are refused at `kubectl apply` and the rest still run
through the operator; test_operator_boundary_seam.py injects a failing renderer, so the boundary
stays exercised whatever the schema lets through.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import OperatorProcess, apply, condition, get, service_manifest
from tests.integration.operator.operators import wait_children

pytestmark = pytest.mark.integration

MALFORMED_TEMPLATES: dict[str, Any] = {
    "containers-a-string": {"spec": {"containers": "x"}},
    "metadata-a-number": {"metadata": 5},
    "container-without-name": {"spec": {"containers": [{"image": "busybox"}]}},
    "container-name-a-number": {"spec": {"containers": [{"name": 5}]}},
    "container-name-a-list": {"spec": {"containers": [{"name": ["engine"]}]}},
    "container-a-number": {"spec": {"containers": [5]}},
    "labels-a-number": {"metadata": {"labels": 5}},
    "labels-a-list": {"metadata": {"labels": ["a"]}},
    "spec-a-list": {"spec": ["x"]},
    "env-a-string": {"spec": {"containers": [{"name": "engine", "env": "x"}]}},
    "volumes-a-map": {"spec": {"volumes": {"name": "x"}}},
    "tolerations-a-string": {"spec": {"tolerations": "x"}},
    "affinity-a-number": {"spec": {"affinity": 7}},
}
FAILURE_REASONS = {"InvalidSpec", "RenderFailed"}
REACTION_S = 30.0


def events_of(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    out = plane.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def failed(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    ready = condition(get(plane, "eals", name, namespace), "Ready")
    return ready if ready and ready["status"] == "False" and ready["reason"] in FAILURE_REASONS else None


def test_malformed_services_fail_alone_and_the_good_ones_children_come_back(
    crd_plane: ControlPlane, operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("boundary")
    stored = []
    for case, template in MALFORMED_TEMPLATES.items():
        manifest = service_manifest(f"bad-{case}", namespace)
        manifest["spec"]["decode"]["podTemplate"] = template
        if apply(crd_plane, manifest, check=False).returncode == 0:
            stored.append(f"bad-{case}")
    apply(crd_plane, service_manifest("good", namespace))
    children = wait_children(crd_plane, namespace, "good")

    # Services are not watched: only the resync, which meets every bad service, brings one back.
    time.sleep(2 * operator.resync_interval_s)  # a few passes over the bad services first
    old = children["service/good-decode"]["metadata"]["uid"]
    crd_plane.kubectl("delete", "service", "good-decode", "-n", namespace)

    def recreated() -> dict[str, Any] | None:
        found = get(crd_plane, "service", "good-decode", namespace)
        return found if found and found["metadata"]["uid"] != old else None

    crd_plane.wait_for(recreated, timeout_s=REACTION_S)
    for name in stored:
        ready = crd_plane.wait_for(lambda name=name: failed(crd_plane, namespace, name), timeout_s=REACTION_S)
        assert ready["message"], name
        assert any(e["reason"] == ready["reason"] for e in events_of(crd_plane, namespace, name)), name
        for role in ("prefill", "decode"):
            assert get(crd_plane, "deployment", f"{name}-{role}", namespace) is None, name
            assert get(crd_plane, "service", f"{name}-{role}", namespace) is None, name

    url = f"http://127.0.0.1:{operator.liveness_port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        # The liveness endpoint runs the probe that goes red if the resync thread dies.
        assert json.loads(response.read())["resync"] is True
