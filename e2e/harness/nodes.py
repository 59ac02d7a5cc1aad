"""Fake GPU nodes from a small declarative description (gpu-nodes.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_DESCRIPTION = Path(__file__).with_name("gpu-nodes.yaml")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class FakeGpuNode:
    name: str
    product: str
    gpus: int
    gpu_memory_mib: int
    family: str
    cpu: str = "128"
    memory: str = "1Ti"
    pods: str = "110"

    def manifest(self) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": self.product,
            "nvidia.com/gpu.count": str(self.gpus),
            "nvidia.com/gpu.memory": str(self.gpu_memory_mib),
            "nvidia.com/gpu.family": self.family,
        }
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods, GPU_RESOURCE: str(self.gpus)}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]},
            "status": {"capacity": resources, "allocatable": resources},
        }


def load_nodes(path: Path = DEFAULT_DESCRIPTION) -> list[FakeGpuNode]:
    """Read a node description; a bad entry fails with the entry's index and field."""
    document = yaml.safe_load(path.read_text())
    entries = document.get("nodes") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty list under 'nodes'")
    nodes = []
    for index, entry in enumerate(entries):
        try:
            nodes.append(
                FakeGpuNode(
                    name=str(entry["name"]),
                    product=str(entry["product"]),
                    gpus=int(entry["gpus"]),
                    gpu_memory_mib=int(entry.get("gpuMemoryMiB", 81559)),
                    family=str(entry.get("family", "hopper")),
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: nodes[{index}]: missing or invalid field {err}") from err
    return nodes
