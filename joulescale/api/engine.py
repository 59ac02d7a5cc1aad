"""The inference engine, its KV transfer and the router in front of it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from joulescale.api.base import ApiModel, cel, validations
from joulescale.api.enginehook import EngineHookSpec, hook_enabled
from joulescale.api.placement import ResourceRequirements, Toleration
from joulescale.batching import DEFAULT_TOKEN_BUDGET

EngineName = Literal["vllm", "sglang"]
VllmConnector = Literal["NixlConnector", "P2pNcclConnector", "LMCacheConnectorV1", "MooncakeConnector"]
SglangBackend = Literal["mooncake", "nixl"]

DEFAULT_VLLM_CONNECTOR: VllmConnector = "NixlConnector"
DEFAULT_SGLANG_BACKEND: SglangBackend = "mooncake"
DEFAULT_SHM_GIB_PER_GPU = 8
"""/dev/shm per GPU of a pod: NCCL's intra-node buffers and the engines' worker queues grow with
the tensor parallel size (16 GiB at TP 2, 64 GiB at TP 8)."""


GPU_RUNTIME_ENV_PREFIX = "NVIDIA_"
"""The NVIDIA container runtime reads NVIDIA_VISIBLE_DEVICES and its kin from a container's
environment: set by a tenant, they could expose GPUs the device plugin did not assign."""


RESERVED_ENV_PREFIX = "JOULESCALE_"
"""The operator's variables in the engine container: the engine hook's socket and the pod UID
that names the pod's directory on the node (a tenant setting it would reach another pod's)."""


class EnvVar(ApiModel):
    """An environment variable of a container."""

    model_config = validations(
        cel(
            f"!self.name.startsWith('{GPU_RUNTIME_ENV_PREFIX}')",
            f"{GPU_RUNTIME_ENV_PREFIX}* variables select GPUs through the NVIDIA container runtime; "
            "the GPUs come from tensorParallelSize",
            ".name",
        ),
        cel(
            f"!self.name.startsWith('{RESERVED_ENV_PREFIX}')",
            f"{RESERVED_ENV_PREFIX}* variables are the operator's (the engine hook); "
            "set spec.engine.hook instead",
            ".name",
        ),
    )

    name: str = Field(
        min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Name."
    )
    value: str | None = Field(default=None, description="A literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="A source for the value, as in the core API (secretKeyRef, configMapKeyRef, fieldRef).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )

    @field_validator("name")
    @classmethod
    def _not_gpu_runtime(cls, name: str) -> str:
        if name.startswith(GPU_RUNTIME_ENV_PREFIX):
            raise ValueError(
                f"{name}: {GPU_RUNTIME_ENV_PREFIX}* variables select GPUs through the NVIDIA container "
                "runtime; the GPUs come from tensorParallelSize"
            )
        if name.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(
                f"{name}: {RESERVED_ENV_PREFIX}* variables are the operator's (the engine hook); "
                "set spec.engine.hook instead"
            )
        return name


class EngineSpec(ApiModel):
    """The engine that runs prefill and decode; the operator writes its P/D command line."""

    name: EngineName = Field(default="vllm", description="vllm or sglang.")
    image: str = Field(min_length=1, max_length=1024, description="The engine's container image.")
    args: list[str] = Field(
        default_factory=list,
        max_length=128,
        description="Extra engine arguments, appended after the ones the operator manages.",
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=128, description="Extra environment variables."
    )
    port: int = Field(
        default=8000, ge=1, le=65535, description="The HTTP port of the engine (API and /metrics)."
    )
    max_batched_tokens: int = Field(
        default=DEFAULT_TOKEN_BUDGET,
        ge=16,
        le=1_048_576,
        description=(
            "The token budget of one engine step: vLLM's --max-num-batched-tokens, SGLang's "
            "--chunked-prefill-size and --max-prefill-tokens. The energy policies plan batches with it."
        ),
    )
    shm_gib_per_gpu: int = Field(
        default=DEFAULT_SHM_GIB_PER_GPU,
        alias="shmGiBPerGpu",
        ge=1,
        le=256,
        description=(
            "Size of the memory-backed /dev/shm per GPU, in GiB: a pod gets this times its "
            "tensorParallelSize. It counts against the pod's memory: keep a memory limit above it."
        ),
    )
    hook: EngineHookSpec = Field(
        default_factory=EngineHookSpec,
        description="The engine hook: each step's batch published to the node agent before it runs.",
        json_schema_extra={"default": {}},
    )

    def hook_enabled(self) -> bool:
        return hook_enabled(self.name, self.image, self.hook)


class KvTransferSpec(ApiModel):
    """The KV-cache transfer between prefill and decode; each engine has its own vocabulary."""

    connector: VllmConnector | None = Field(
        default=None, description=f"vLLM's KV connector; default {DEFAULT_VLLM_CONNECTOR}."
    )
    backend: SglangBackend | None = Field(
        default=None,
        description=f"SGLang's disaggregation transfer backend; default {DEFAULT_SGLANG_BACKEND}.",
    )

    def vllm_connector(self) -> VllmConnector:
        return self.connector or DEFAULT_VLLM_CONNECTOR

    def sglang_backend(self) -> SglangBackend:
        return self.backend or DEFAULT_SGLANG_BACKEND


class RouterSpec(ApiModel):
    """The P/D router: it sends each request to a prefill pod, then streams it from a decode pod."""

    enabled: bool = Field(default=False, description="Deploy a router Deployment and Service.")
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="The router's image. Default: vLLM, the JouleScale P/D proxy "
        "(ghcr.io/joulescale/joulescale-router at the operator's version); SGLang, the engine's "
        "image, which contains sglang_router.",
    )
    args: list[str] = Field(default_factory=list, max_length=64, description="Extra router arguments.")
    port: int = Field(default=8000, ge=1, le=65535, description="The router's HTTP port.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="CPU and memory of the router container.",
        json_schema_extra={"default": {}},
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the router pod requires."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=32,
        description="Tolerations of the router pod, e.g. nvidia.com/gpu on a cluster of GPU nodes only.",
    )

