"""Plain workloads for the local cluster's tests: GPU pods without JouleScale in between."""

from __future__ import annotations

import json
from typing import Any

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def gpu_deployment(
    name: str, namespace: str, *, replicas: int, gpus_per_pod: int, product: str | None = None
) -> str:
    """A Deployment whose pods each request ``gpus_per_pod`` GPUs and tolerate the GPU taint;
    with ``product``, they also require nodes of that nvidia.com/gpu.product."""
    pod: dict[str, Any] = {
        "tolerations": [GPU_TOLERATION],
        "containers": [
            {
                "name": "engine",
                "image": "registry.invalid/engine:1",
                "resources": {"limits": {"nvidia.com/gpu": str(gpus_per_pod)}},
            }
        ],
    }
    if product is not None:
        term = {
            "matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": [product]}]
        }
        pod["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
        },
    }
    return json.dumps(manifest)
