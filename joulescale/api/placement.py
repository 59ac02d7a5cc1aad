"""Where a role's pods may run and what they request: GPU products, resources, tolerations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

from pydantic import Field, WithJsonSchema, field_validator

from joulescale.api.base import AllowlistModel, ApiModel, cel, validations

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource of the NVIDIA device plugin; the operator sets it from tensorParallelSize."""

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""The node label of GPU Feature Discovery that names the GPU model."""

Quantity = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True, "description": "A Kubernetes quantity."}),
]

ProductName = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"),
]


class GpuSpec(ApiModel):
    """The GPU models a role may run on; the pods get a required node affinity on them."""

    products: list[ProductName] = Field(
        min_length=1,
        max_length=16,
        description=f"Accepted values of the node label {GPU_PRODUCT_LABEL}, e.g. NVIDIA-H100-80GB-HBM3.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


GPU_RESOURCE_DOMAINS = ("nvidia.com/", "amd.com/", "gpu.intel.com/", "habana.ai/")
"""Resource names under these domains are accelerators (GPUs, MIG slices, shared GPUs): the
operator alone decides them, from tensorParallelSize."""


def is_gpu_resource(name: str) -> bool:
    """True for nvidia.com/gpu, MIG slices, other vendors' GPUs and any resource naming a GPU."""
    lowered = name.lower()
    return lowered.startswith(GPU_RESOURCE_DOMAINS) or "gpu" in lowered


def _no_gpu_rule(field: str) -> str:
    domains = " || ".join(f"k.lowerAscii().startsWith('{domain}')" for domain in GPU_RESOURCE_DOMAINS)
    return f"!has(self.{field}) || self.{field}.all(k, !({domains} || k.lowerAscii().contains('gpu')))"


_GPU_MESSAGE = (
    "GPU resources ({resources} and any name containing gpu) are set by the operator from "
    "tensorParallelSize; remove them from {field}"
)

ResourceName = Annotated[str, Field(min_length=1, max_length=253)]


class ResourceRequirements(AllowlistModel):
    """CPU, memory and other non-GPU resources of a container; the GPU count is not set here."""

    model_config = validations(
        *(
            cel(
                _no_gpu_rule(field),
                _GPU_MESSAGE.format(resources=", ".join(f"{d}*" for d in GPU_RESOURCE_DOMAINS), field=field),
                f".{field}",
            )
            for field in ("limits", "requests")
        )
    )

    REFUSED: ClassVar[Mapping[str, str]] = {
        "claims": "dynamic resource claims (DRA) could claim GPUs; GPUs come from tensorParallelSize"
    }

    limits: dict[ResourceName, Quantity] | None = Field(
        default=None, max_length=32, description="Resource limits (cpu, memory, ...)."
    )
    requests: dict[ResourceName, Quantity] | None = Field(
        default=None, max_length=32, description="Resource requests (cpu, memory, ...)."
    )

    @field_validator("limits", "requests")
    @classmethod
    def _no_gpu(cls, values: dict[str, Quantity] | None) -> dict[str, Quantity] | None:
        gpus = sorted(name for name in values or {} if is_gpu_resource(name))
        if gpus:
            raise ValueError(
                f"{', '.join(gpus)}: GPU resources are set by the operator from tensorParallelSize"
            )
        return values


class Toleration(ApiModel):
    """A pod toleration, as in the core API, added next to the operator's nvidia.com/gpu toleration."""

    key: str | None = Field(
        default=None, description="The taint key; empty with operator Exists matches all."
    )
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, description="The taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated, in seconds."
    )
