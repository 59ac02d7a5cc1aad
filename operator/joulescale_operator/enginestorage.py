"""The engine pod's storage: a memory-backed /dev/shm sized for its GPUs, the model cache at
HF_HOME, and the Hugging Face token (pure).

The volume names are fixed so that an override that adds the same volume by hand (as samples
once did for /dev/shm) merges into it instead of mounting a second volume on the same path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from joulescale.api import EnergyAwareLLMServiceSpec, RoleSpec

SHM_VOLUME = "shm"
SHM_PATH = "/dev/shm"
MODEL_CACHE_VOLUME = "model-cache"
MODEL_CACHE_PATH = "/model-cache"
"""HF_HOME: vLLM and SGLang both download through huggingface_hub, which caches under it."""
TOKEN_ENV = "HF_TOKEN"


@dataclass(frozen=True, slots=True)
class EngineStorage:
    """What the engine container mounts and the environment that points the engines at it."""

    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]
    env: list[dict[str, Any]]


def shm_size_gib(spec: EnergyAwareLLMServiceSpec, role: RoleSpec) -> int:
    """The /dev/shm size of a pod: the per-GPU amount times the GPUs of the pod."""
    return spec.engine.shm_gib_per_gpu * role.tensor_parallel_size


def engine_storage(spec: EnergyAwareLLMServiceSpec, role: RoleSpec) -> EngineStorage:
    shm = {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_size_gib(spec, role)}Gi"}}
    cache = spec.model.cache
    read_only = cache is not None and cache.read_only
    cache_volume: dict[str, Any] = {"name": MODEL_CACHE_VOLUME}
    if cache is None:
        cache_volume["emptyDir"] = {}
    else:
        claim: dict[str, Any] = {"claimName": cache.claim_name}
        if read_only:
            claim["readOnly"] = True
        cache_volume["persistentVolumeClaim"] = claim
    cache_mount: dict[str, Any] = {"name": MODEL_CACHE_VOLUME, "mountPath": MODEL_CACHE_PATH}
    if read_only:
        cache_mount["readOnly"] = True
    env: list[dict[str, Any]] = [{"name": "HF_HOME", "value": MODEL_CACHE_PATH}]
    if read_only:
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})
    token = spec.model.secret_ref
    if token is not None:
        env.append({"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}}})
    return EngineStorage(
        volumes=[shm, cache_volume],
        mounts=[{"name": SHM_VOLUME, "mountPath": SHM_PATH}, cache_mount],
        env=env,
    )
