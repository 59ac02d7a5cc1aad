"""How a role's Deployment replaces its pods: GPU nodes are usually full, so no surge by default."""

from __future__ import annotations

from pydantic import Field, model_validator

from joulescale.api.base import ApiModel, cel, validations


class RolloutSpec(ApiModel):
    """The RollingUpdate of a role, in pods.

    A surge pod needs GPUs that a full node pool does not have: it would stay Pending and the
    rollout would stall. The default replaces one pod at a time instead (maxSurge 0,
    maxUnavailable 1); set maxSurge where spare GPUs exist and capacity must not dip."""

    model_config = validations(
        cel(
            "!has(self.maxSurge) || !has(self.maxUnavailable) || self.maxSurge > 0 || self.maxUnavailable > 0",
            "maxSurge and maxUnavailable cannot both be 0 (the rollout could never progress)",
            ".maxUnavailable",
        )
    )

    max_surge: int = Field(default=0, ge=0, le=1024, description="Extra pods created during a rollout.")
    max_unavailable: int = Field(
        default=1, ge=0, le=1024, description="Pods that may be unavailable during a rollout."
    )

    @model_validator(mode="after")
    def _can_progress(self) -> RolloutSpec:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError(
                "maxSurge and maxUnavailable cannot both be 0 (the rollout could never progress)"
            )
        return self
