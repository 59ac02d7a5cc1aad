"""Where a role's pods may run and what they request: GPU products, resources, tolerations."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from joulescale.api.base import ApiModel, cel, validations

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


class ResourceRequirements(ApiModel):
    """CPU, memory and other resources of the engine container; the GPU count is not set here."""

    model_config = validations(
        cel(
            f"!has(self.limits) || !('{GPU_RESOURCE}' in self.limits)",
            f"{GPU_RESOURCE} is set by the operator from tensorParallelSize; remove it from limits",
            ".limits",
        ),
        cel(
            f"!has(self.requests) || !('{GPU_RESOURCE}' in self.requests)",
            f"{GPU_RESOURCE} is set by the operator from tensorParallelSize; remove it from requests",
            ".requests",
        ),
    )

    limits: dict[str, Quantity] | None = Field(
        default=None, description="Resource limits (cpu, memory, ...)."
    )
    requests: dict[str, Quantity] | None = Field(
        default=None, description="Resource requests (cpu, memory, ...)."
    )


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


PodTemplateOverride = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "description": (
                "An escape hatch: a partial PodTemplateSpec merged over the rendered one "
                "(maps merge, lists of named items merge by name, other lists replace)."
            ),
        }
    ),
]
