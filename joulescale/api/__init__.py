"""The EnergyAwareLLMService API: pydantic models of the spec and status, the single source of truth.

The CRD under crds/ is generated from these models (`python -m joulescale.api.crd crds/`).
"""

from joulescale.api.base import API_VERSION, GROUP, KIND, PLURAL, SHORT_NAME, VERSION
from joulescale.api.engine import EngineSpec, EnvVar, KvTransferSpec, RouterSpec
from joulescale.api.placement import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    GpuSpec,
    ResourceRequirements,
    Toleration,
)
from joulescale.api.resource import EnergyAwareLLMService
from joulescale.api.spec import (
    AutoscalingSpec,
    ClockBounds,
    EnergyAwareLLMServiceSpec,
    EnergySpec,
    ModelSpec,
    PlannerSpec,
    RoleSpec,
    SloSpec,
    parse_spec,
)
from joulescale.api.status import Condition, EnergyAwareLLMServiceStatus, EnergyStatus, PlanStatus, RoleStatus

__all__ = [
    "API_VERSION",
    "GPU_PRODUCT_LABEL",
    "GPU_RESOURCE",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "VERSION",
    "AutoscalingSpec",
    "ClockBounds",
    "Condition",
    "EnergyAwareLLMService",
    "EnergyAwareLLMServiceSpec",
    "EnergyAwareLLMServiceStatus",
    "EnergySpec",
    "EnergyStatus",
    "EngineSpec",
    "EnvVar",
    "GpuSpec",
    "KvTransferSpec",
    "ModelSpec",
    "PlanStatus",
    "PlannerSpec",
    "ResourceRequirements",
    "RoleSpec",
    "RoleStatus",
    "RouterSpec",
    "SloSpec",
    "Toleration",
    "parse_spec",
]
