"""Status that explains, against the real apiserver: the scheduler's word on a Pending pod and a
ReplicaSet's failure reach the service's conditions, columns and events.

This tier runs no scheduler and no controller-manager: a pod is created by hand with the role's
labels and given PodScheduled=False through the status subresource, as the scheduler would.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import OperatorProcess, apply, condition, get, service_manifest
from tests.integration.operator.operators import wait_children

pytestmark = pytest.mark.integration

NO_GPU = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
QUOTA = 'pods "llama-prefill-x" is forbidden: exceeded quota: gpus, requested: requests.nvidia.com/gpu=2'


def unschedulable_pod(plane: ControlPlane, namespace: str, name: str, role: str, message: str) -> None:
    plane.kubectl("create", "serviceaccount", "default", "-n", namespace, check=False)
    labels = {"joulescale.io/service": "llama", "joulescale.io/role": role}
    # As its ReplicaSet would own it (no controller-manager here to collect an owner that is absent).
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"llama-{role}-5d8f", "uid": "0" * 8,
             "controller": True}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]},
        "spec": {"containers": [{"name": "engine", "image": "vllm/vllm-openai:v0.11.0"}]},
    }
    plane.kubectl("create", "-f", "-", input=json.dumps(pod))
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    status = {"status": {"phase": "Pending", "conditions": [scheduled]}}
    plane.kubectl("patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def events_of(plane: ControlPlane, namespace: str) -> list[tuple[str, str, str]]:
    items = json.loads(plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    ours = [e for e in items if e["involvedObject"].get("kind") == "EnergyAwareLLMService"]
    assert {e["source"]["component"] for e in ours} <= {"joulescale.io/joulescale-operator"}
    return sorted((e["type"], e["reason"], e["message"]) for e in ours)


def test_an_unschedulable_decode_pod_explains_the_service(crd_plane: ControlPlane, operator: OperatorProcess) -> None:
    namespace = crd_plane.create_namespace("explain")
    apply(crd_plane, service_manifest("llama", namespace))
    wait_children(crd_plane, namespace, "llama")
    unschedulable_pod(crd_plane, namespace, "llama-decode-abc", "decode", NO_GPU)
    # What the Deployment controller would write once its ReplicaSet made the pods.
    crd_plane.kubectl(
        "patch", "deployment", "llama-decode", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"replicas": 2, "unavailableReplicas": 2}}),
    )

    def explained() -> dict[str, Any] | None:
        decode = condition(get(crd_plane, "eals", "llama", namespace), "DecodeReady")
        return decode if decode and decode["reason"] == "Unschedulable" else None

    decode = crd_plane.wait_for(explained, timeout_s=30)
    assert decode["status"] == "False"
    assert decode["message"].endswith(f"pod llama-decode-abc cannot be scheduled: {NO_GPU}")
    service = get(crd_plane, "eals", "llama", namespace)
    degraded, ready = condition(service, "Degraded"), condition(service, "Ready")
    assert degraded is not None
    assert ready is not None
    assert (degraded["status"], degraded["reason"]) == ("True", "Unschedulable")
    assert NO_GPU in degraded["message"]
    assert (ready["status"], ready["reason"]) == ("False", "Unschedulable")
    prefill = condition(service, "PrefillReady")
    assert prefill is not None
    assert prefill["reason"] != "Unschedulable"

    table = crd_plane.kubectl("get", "eals", "llama", "-n", namespace).stdout.split("\n")
    header, row = table[0].split(), table[1].split()
    assert header[:3] == ["NAME", "READY", "REASON"]
    # The planner's columns are empty without a planner loop: whitespace cannot align the row.
    assert f"llama-decode.{namespace}.svc:8000" in row
    assert row[2] == "Unschedulable"
    described = crd_plane.kubectl("describe", "eals", "llama", "-n", namespace).stdout
    assert "Insufficient nvidia.com/gpu" in described


def test_a_replicaset_failure_and_child_changes_reach_the_service(
    crd_plane: ControlPlane, operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("failure")
    manifest = service_manifest("llama", namespace)
    apply(crd_plane, manifest)
    wait_children(crd_plane, namespace, "llama")
    children = "Deployment llama-prefill, Deployment llama-decode, Service llama-prefill, Service llama-decode"
    created = [("Normal", "Created", f"Created {children}.")]
    crd_plane.wait_for(lambda: set(created) <= set(events_of(crd_plane, namespace)), timeout_s=30)

    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": QUOTA}
    status = {"status": {"observedGeneration": 1, "replicas": 0, "conditions": [failure]}}
    crd_plane.kubectl(
        "patch", "deployment", "llama-prefill", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )

    def failed() -> dict[str, Any] | None:
        prefill = condition(get(crd_plane, "eals", "llama", namespace), "PrefillReady")
        return prefill if prefill and prefill["reason"] == "FailedCreate" else None

    assert crd_plane.wait_for(failed, timeout_s=30)["message"] == f"0/1 replicas ready. {QUOTA}"
    degraded = condition(get(crd_plane, "eals", "llama", namespace), "Degraded")
    assert degraded is not None
    assert (degraded["status"], degraded["reason"]) == ("True", "FailedCreate")

    manifest["spec"]["decode"]["replicas"] = 3
    apply(crd_plane, manifest)
    scaled = ("Normal", "Scaled", "Scaled Deployment llama-decode from 2 to 3 replicas.")
    crd_plane.wait_for(lambda: scaled in events_of(crd_plane, namespace), timeout_s=30)
    time.sleep(3 * operator.resync_interval_s)  # several resyncs: their no-op applies post nothing
    normals = [e for e in events_of(crd_plane, namespace) if e[0] == "Normal"]
    assert sorted(normals) == sorted([*created, scaled])
