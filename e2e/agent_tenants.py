"""Engine pods in the real apiserver as the operator and the Deployment controller leave them
(service -> Deployment -> ReplicaSet -> pod, each owned by UID), and pods that only claim to be.

The apiserver tier runs no controller-manager, so the tests create the Deployment, ReplicaSet
and pod themselves, with the owner references those controllers would write."""

from __future__ import annotations

import json
from typing import Any

from e2e.harness.controlplane import ControlPlane

GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def service(namespace: str, name: str = "chat", *, port: int = 8000, **energy: Any) -> dict[str, Any]:
    gpu = {"products": [GPU_PRODUCT]}
    return {
        "apiVersion": "joulescale.io/v1alpha1",
        "kind": "EnergyAwareLLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": MODEL},
            "engine": {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "port": port},
            "prefill": {"replicas": 1, "tensorParallelSize": 1, "gpu": gpu},
            "decode": {"replicas": 1, "tensorParallelSize": 1, "gpu": gpu},
            "slo": {"ttftMs": 600, "tpotMs": 50},
            "energy": {"policy": "joulescale", **energy},
        },
    }


def create(plane: ControlPlane, obj: dict[str, Any]) -> dict[str, Any]:
    """Creates ``obj`` and returns it as stored (with its UID)."""
    out = plane.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(obj)).stdout
    stored: dict[str, Any] = json.loads(out)
    return stored


def owner(obj: dict[str, Any]) -> dict[str, Any]:
    """A controller reference to a stored object."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }


def _workload(
    kind: str, namespace: str, name: str, labels: dict[str, str], owned_by: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owned_by]},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "engine", "image": "engine:sim"}]},
            },
        },
    }


def owner_chain(plane: ControlPlane, svc: dict[str, Any], role: str = "decode") -> dict[str, Any]:
    """The operator's Deployment of ``role`` and its ReplicaSet; returns the ReplicaSet."""
    namespace, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    labels = {"joulescale.io/service": name, "joulescale.io/role": role}
    deployment = create(plane, _workload("Deployment", namespace, f"{name}-{role}", labels, owner(svc)))
    replicaset = _workload("ReplicaSet", namespace, f"{name}-{role}-5d8f", labels, owner(deployment))
    return create(plane, replicaset)


def engine_pod(
    namespace: str,
    name: str,
    node: str,
    *,
    service_name: str = "chat",
    role: str = "decode",
    owned_by: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    env: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"joulescale.io/role": role, "joulescale.io/service": service_name},
        "annotations": annotations or {},
    }
    if owned_by is not None:
        meta["ownerReferences"] = [owner(owned_by)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "containers": [{"name": "engine", "image": "engine:sim", "env": env or []}],
        },
    }


def set_running(plane: ControlPlane, namespace: str, name: str, ip: str) -> None:
    status = {"status": {"phase": "Running", "podIP": ip}}
    plane.kubectl(
        "-n",
        namespace,
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )


def gpu_node(plane: ControlPlane, name: str) -> None:
    """A Node object with the GPU product label the agent picks its profiles by."""
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": GPU_PRODUCT}},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(node))
