"""The operator against the real kube-apiserver: create, update, idempotence, invalid specs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import (
    OperatorProcess,
    apply,
    condition,
    get,
    managed_resource_versions,
    mark_deployment_ready,
    service_manifest,
)
from tests.integration.operator.operators import wait_children

pytestmark = pytest.mark.integration


def engine_command(deployment: dict[str, Any]) -> list[str]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    command: list[str] = next(c for c in containers if c["name"] == "engine")["command"]
    return command


def test_create_makes_children_with_placement_labels_owner_and_status(
    crd_plane: ControlPlane, operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("create")
    apply(crd_plane, service_manifest("llama", namespace))
    children = wait_children(crd_plane, namespace, "llama")
    service = get(crd_plane, "eals", "llama", namespace)
    assert service is not None
    assert not service["metadata"].get("finalizers"), "deletion must not wait for the operator"
    prefill = children["deployment/llama-prefill"]
    (owner,) = prefill["metadata"]["ownerReferences"]
    assert owner["uid"] == service["metadata"]["uid"]
    assert prefill["metadata"]["labels"]["joulescale.io/role"] == "prefill"
    assert prefill["metadata"]["labels"]["llm-d.ai/role"] == "prefill"
    pod = prefill["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]["values"] == ["NVIDIA-H100-80GB-HBM3"]
    assert children["deployment/llama-decode"]["spec"]["replicas"] == 2
    shown = crd_plane.kubectl(
        "get", "deployment", "llama-prefill", "-n", namespace, "-o", "json", "--show-managed-fields"
    )
    managers = {entry["manager"] for entry in json.loads(shown.stdout)["metadata"]["managedFields"]}
    assert managers == {"joulescale-operator"}

    def status_written() -> dict[str, Any] | None:
        ready = condition(get(crd_plane, "eals", "llama", namespace), "Ready")
        return ready if ready and ready.get("observedGeneration") == 1 else None

    ready = crd_plane.wait_for(status_written, timeout_s=30)
    assert ready["status"] == "False"
    assert ready["reason"] == "RolesNotReady"


def test_updates_reach_the_children(crd_plane: ControlPlane, operator: OperatorProcess) -> None:
    namespace = crd_plane.create_namespace("update")
    manifest = service_manifest("svc", namespace)
    apply(crd_plane, manifest)
    wait_children(crd_plane, namespace, "svc")
    manifest["spec"]["slo"] = {"ttftMs": 250, "tpotMs": 30, "percentile": 90}
    manifest["spec"]["decode"]["replicas"] = 3
    manifest["spec"]["engine"] = {"image": "vllm/vllm-openai:v0.12.0", "args": ["--max-model-len", "4096"]}
    apply(crd_plane, manifest)

    def updated() -> dict[str, Any] | None:
        decode = get(crd_plane, "deployment", "svc-decode", namespace)
        if decode is None or decode["spec"]["replicas"] != 3:
            return None
        return decode

    decode = crd_plane.wait_for(updated, timeout_s=30)
    assert decode["metadata"]["annotations"]["joulescale.io/ttft-ms"] == "250"
    assert decode["metadata"]["annotations"]["joulescale.io/slo-percentile"] == "90"
    assert decode["spec"]["template"]["spec"]["containers"][0]["image"] == "vllm/vllm-openai:v0.12.0"
    assert engine_command(decode)[-2:] == ["--max-model-len", "4096"]
    prefill = get(crd_plane, "deployment", "svc-prefill", namespace)
    assert prefill is not None
    assert engine_command(prefill)[-2:] == ["--max-model-len", "4096"]


def test_reconciles_of_an_unchanged_service_write_nothing(
    crd_plane: ControlPlane, operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("steady")
    apply(crd_plane, service_manifest("steady", namespace, router={"enabled": True, "image": "proxy:1"}))
    crd_plane.wait_for(lambda: condition(get(crd_plane, "eals", "steady", namespace), "Ready"), timeout_s=30)
    time.sleep(operator.resync_interval_s * 2)
    before = managed_resource_versions(crd_plane, namespace)
    assert len(before) == 7, before  # 2 Deployments + 2 Services per role pair, the router's 2, the service
    time.sleep(operator.resync_interval_s * 3)
    assert managed_resource_versions(crd_plane, namespace) == before


def test_drift_is_corrected_by_the_timer(crd_plane: ControlPlane, operator: OperatorProcess) -> None:
    namespace = crd_plane.create_namespace("drift")
    apply(crd_plane, service_manifest("drift", namespace))
    wait_children(crd_plane, namespace, "drift")
    crd_plane.kubectl("delete", "service", "drift-decode", "-n", namespace)
    crd_plane.wait_for(
        lambda: get(crd_plane, "service", "drift-decode", namespace),
        timeout_s=operator.resync_interval_s * 10,
    )


def test_what_the_schema_cannot_reject_is_an_invalid_spec_condition_and_no_child(
    crd_plane: ControlPlane, operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("invalid")
    apply(crd_plane, service_manifest("bad", namespace, engine={"image": "x", "args": ["--port", "9"]}))

    def invalid() -> dict[str, Any] | None:
        ready = condition(get(crd_plane, "eals", "bad", namespace), "Ready")
        return ready if ready and ready["reason"] == "InvalidSpec" else None

    ready = crd_plane.wait_for(invalid, timeout_s=30)
    assert ready["status"] == "False"
    assert "spec.engine.args" in ready["message"]
    assert get(crd_plane, "deployment", "bad-prefill", namespace) is None
    events = json.loads(crd_plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in events)


def test_the_resync_carries_deployment_readiness_into_the_status(
    crd_plane: ControlPlane, operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("ready")
    apply(crd_plane, service_manifest("ready", namespace))
    children = wait_children(crd_plane, namespace, "ready")
    for role in ("prefill", "decode"):
        mark_deployment_ready(crd_plane, children[f"deployment/ready-{role}"])

    def ready() -> dict[str, Any] | None:
        service = get(crd_plane, "eals", "ready", namespace)
        found = condition(service, "Ready")
        return service if found and found["status"] == "True" else None

    service = crd_plane.wait_for(ready, timeout_s=operator.resync_interval_s * 10)
    assert service["status"]["decode"]["readyOfDesired"] == "2/2"
