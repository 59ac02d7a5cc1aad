"""The whole custom resource, for readers that hold one (the twin, the CLI, tests)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from joulescale.api.base import ApiModel
from joulescale.api.spec import EnergyAwareLLMServiceSpec
from joulescale.api.status import EnergyAwareLLMServiceStatus


class EnergyAwareLLMService(ApiModel):
    """An EnergyAwareLLMService object as stored by the apiserver."""

    api_version: Literal["joulescale.io/v1alpha1"] = Field(
        default="joulescale.io/v1alpha1", alias="apiVersion"
    )
    kind: Literal["EnergyAwareLLMService"] = Field(default="EnergyAwareLLMService")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: EnergyAwareLLMServiceSpec
    status: EnergyAwareLLMServiceStatus | None = None
