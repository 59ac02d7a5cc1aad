"""The operator on the whole local cluster: placement by GPU product, Ready, garbage collection."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import OperatorProcess, apply, condition, get, pods_of, service_manifest

pytestmark = pytest.mark.e2e

NODE_PRODUCT = {"kwok-h100-0": "NVIDIA-H100-80GB-HBM3", "kwok-h100-1": "NVIDIA-H100-80GB-HBM3"}
NODE_PRODUCT["kwok-a100-0"] = "NVIDIA-A100-SXM4-80GB"


def owned_objects(cluster: ControlPlane, namespace: str, service: str) -> list[str]:
    listed = cluster.kubectl(
        "get",
        "deployments,replicasets,services,pods",
        "-n",
        namespace,
        "-l",
        f"joulescale.io/service={service}",
        "-o",
        "name",
    )
    return listed.stdout.split()


def test_pods_land_on_their_gpu_products_the_service_gets_ready_and_deletion_collects_all(
    cluster: ControlPlane, cluster_operator: OperatorProcess
) -> None:
    namespace = cluster.create_namespace("e2e-op")
    apply(cluster, service_manifest("llama", namespace))

    def scheduled() -> list[dict[str, Any]] | None:
        pods = pods_of(cluster, namespace, "llama")
        placed = [pod for pod in pods if pod["spec"].get("nodeName")]
        return placed if len(placed) == 3 else None

    pods = cluster.wait_for(scheduled, timeout_s=90)
    for pod in pods:
        role = pod["metadata"]["labels"]["joulescale.io/role"]
        expected = "NVIDIA-H100-80GB-HBM3" if role == "prefill" else "NVIDIA-A100-SXM4-80GB"
        assert NODE_PRODUCT[pod["spec"]["nodeName"]] == expected, (role, pod["spec"]["nodeName"])

    def ready() -> dict[str, Any] | None:
        service = get(cluster, "eals", "llama", namespace)
        found = condition(service, "Ready")
        return service if found and found["status"] == "True" else None

    service = cluster.wait_for(ready, timeout_s=90)
    assert service["status"]["prefill"]["readyOfDesired"] == "1/1"
    assert service["status"]["decode"]["readyOfDesired"] == "2/2"
    decode_ready = condition(service, "DecodeReady")
    assert decode_ready is not None
    assert decode_ready["reason"] == "AllReplicasReady"
    assert len(owned_objects(cluster, namespace, "llama")) == 2 + 2 + 2 + 3

    cluster.kubectl("delete", "eals", "llama", "-n", namespace, "--wait=true")
    cluster.wait_for(lambda: not owned_objects(cluster, namespace, "llama"), timeout_s=90)


def test_a_decode_that_no_node_can_hold_shows_the_schedulers_reason_and_degrades(
    cluster: ControlPlane, cluster_operator: OperatorProcess
) -> None:
    """Decode at TP 16 asks for 16 GPUs; no kwok node has more than 8."""
    namespace = cluster.create_namespace("e2e-unsched")
    decode = {"replicas": 1, "tensorParallelSize": 16, "gpu": {"products": ["NVIDIA-A100-SXM4-80GB"]}}
    apply(cluster, service_manifest("big", namespace, decode=decode))

    def explained() -> dict[str, Any] | None:
        service = get(cluster, "eals", "big", namespace)
        found = condition(service, "DecodeReady")
        prefill = condition(service, "PrefillReady")
        done = found and found["reason"] == "Unschedulable" and prefill and prefill["status"] == "True"
        return service if done else None

    service = cluster.wait_for(explained, timeout_s=90)
    decode_ready, degraded, ready = (condition(service, t) for t in ("DecodeReady", "Degraded", "Ready"))
    assert decode_ready is not None
    assert degraded is not None
    assert ready is not None
    assert decode_ready["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in decode_ready["message"], decode_ready["message"]
    assert (degraded["status"], degraded["reason"]) == ("True", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in degraded["message"]
    assert (ready["status"], ready["reason"]) == ("False", "Unschedulable")
    assert service["status"]["endpoint"] == f"big-decode.{namespace}.svc:8000"
    row = cluster.kubectl("get", "eals", "big", "-n", namespace, "--no-headers").stdout.split()
    assert row[1:3] == ["False", "Unschedulable"]
