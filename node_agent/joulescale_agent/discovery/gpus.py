"""Which GPUs a pod holds: the one fact a tenant must never be able to claim.

Two sources, chosen by the agent's ``--gpu-source`` and never mixed:
- ``podresources`` (the default): the kubelet's PodResources API says which devices the device
  plugin gave each pod (``podresources.PodResourcesSource``). A pod it does not list holds no
  GPU the agent may touch: no fallback to anything the pod says about itself.
- ``pod-spec-unsafe``: the pod's own ``joulescale.io/gpus`` annotation, else an explicit
  ``NVIDIA_VISIBLE_DEVICES`` in its spec (``PodSpecSource``). Any pod can write these, so a
  tenant could name another tenant's GPU: only for nodes without the kubelet API that run one
  trusted tenant, and for tests.

A source is read once per recompute, off the event loop (``read`` may block); the answer it
returns is looked up without blocking.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

GPUS_ANNOTATION = "joulescale.io/gpus"
PODRESOURCES = "podresources"
POD_SPEC_UNSAFE = "pod-spec-unsafe"
GPU_SOURCES = (PODRESOURCES, POD_SPEC_UNSAFE)


class GpuAssignments(Protocol):
    """One reading of a source."""

    def gpus_for(self, pod: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The GPU UUIDs of the pod (camelCase API dict), or None when they are not known."""
        ...

    def unknown_because(self) -> str:
        """Why ``gpus_for`` said None (for the refusal's detail)."""
        ...


class GpuSource(Protocol):
    def read(self) -> GpuAssignments:
        """May block (a kubelet call): the caller runs it off the event loop, within a budget."""
        ...


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class KubeletAssignments:
    """The kubelet's answer: GPUs by ``namespace/pod``; empty with ``error`` when it failed."""

    def __init__(self, by_pod: Mapping[str, tuple[str, ...]], error: str | None = None) -> None:
        self._by_pod = dict(by_pod)
        self._error = error

    @property
    def error(self) -> str | None:
        return self._error

    def gpus_for(self, pod: Mapping[str, Any]) -> tuple[str, ...] | None:
        return self._by_pod.get(pod_key(pod)) or None

    def unknown_because(self) -> str:
        if self._error is not None:
            return f"the kubelet's PodResources gave no answer ({self._error:.200})"
        return "the kubelet's PodResources lists no GPU for the pod"


NO_GPUS = KubeletAssignments({}, "not asked yet")


def _split(value: str) -> tuple[str, ...] | None:
    ids = tuple(v.strip() for v in value.split(",") if v.strip())
    if not ids or any(v.lower() in ("all", "none", "void") for v in ids):
        return None
    return ids


def _annotation(pod: Mapping[str, Any]) -> tuple[str, ...] | None:
    meta = pod.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = annotations.get(GPUS_ANNOTATION) if isinstance(annotations, Mapping) else None
    return _split(value) if isinstance(value, str) else None


def _env(pod: Mapping[str, Any]) -> tuple[str, ...] | None:
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    for container in containers if isinstance(containers, list) else []:
        envs = container.get("env") if isinstance(container, Mapping) else None
        for env in envs if isinstance(envs, list) else []:
            if not isinstance(env, Mapping) or env.get("name") != "NVIDIA_VISIBLE_DEVICES":
                continue
            value = env.get("value")
            found = _split(value) if isinstance(value, str) else None
            if found:
                return found
    return None


class PodSpecAssignments:
    """What the pod says about itself (unsafe: see the module docstring)."""

    def gpus_for(self, pod: Mapping[str, Any]) -> tuple[str, ...] | None:
        return _annotation(pod) or _env(pod)

    def unknown_because(self) -> str:
        return f"the pod has neither a {GPUS_ANNOTATION} annotation nor NVIDIA_VISIBLE_DEVICES"


class PodSpecSource:
    """``--gpu-source=pod-spec-unsafe``: reads nothing outside the pod."""

    def read(self) -> GpuAssignments:
        return PodSpecAssignments()
