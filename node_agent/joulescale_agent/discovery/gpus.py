"""Which GPUs a pod uses: a plug-in point, because the authoritative source (the kubelet
PodResources API, gRPC over a unix socket) needs the kubelet's socket mounted into the agent.

Implemented here, in order of preference for ``ChainedResolver``:
- ``AnnotationResolver``: the pod annotation ``joulescale.io/gpus`` (comma-separated GPU UUIDs),
  for tests, kwok nodes and clusters where a mutating webhook or the device plugin records them.
- ``EnvResolver``: an explicit ``NVIDIA_VISIBLE_DEVICES`` env var in the pod spec (set by users
  who pin GPUs by hand; the device plugin's own injection is not visible in the API).
A PodResources client plugs in as another ``GpuResolver`` (see docs/agent.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

GPUS_ANNOTATION = "joulescale.io/gpus"


class GpuResolver(Protocol):
    def gpus_for(self, pod: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The GPU UUIDs of the pod (camelCase API dict), or None when this source does not know."""
        ...


def _split(value: str) -> tuple[str, ...] | None:
    ids = tuple(v.strip() for v in value.split(",") if v.strip())
    if not ids or any(v.lower() in ("all", "none", "void") for v in ids):
        return None
    return ids


class AnnotationResolver:
    def gpus_for(self, pod: Mapping[str, Any]) -> tuple[str, ...] | None:
        value = (pod.get("metadata", {}).get("annotations") or {}).get(GPUS_ANNOTATION)
        return _split(value) if isinstance(value, str) else None


class EnvResolver:
    def gpus_for(self, pod: Mapping[str, Any]) -> tuple[str, ...] | None:
        for container in pod.get("spec", {}).get("containers") or []:
            for env in container.get("env") or []:
                if env.get("name") == "NVIDIA_VISIBLE_DEVICES" and isinstance(env.get("value"), str):
                    found = _split(env["value"])
                    if found:
                        return found
        return None


class ChainedResolver:
    def __init__(self, resolvers: Sequence[GpuResolver]) -> None:
        self._resolvers = tuple(resolvers)

    def gpus_for(self, pod: Mapping[str, Any]) -> tuple[str, ...] | None:
        for resolver in self._resolvers:
            found = resolver.gpus_for(pod)
            if found:
                return found
        return None


def default_resolver() -> ChainedResolver:
    return ChainedResolver([AnnotationResolver(), EnvResolver()])
