"""The EnergyAwareLLMService API: pydantic models of the spec and status, the single source of truth.

The CRD under crds/ is generated from these models (`python -m joulescale.api.crd crds/`).
"""

from joulescale.api.base import API_VERSION, GROUP, KIND, PLURAL, SHORT_NAME, VERSION
from joulescale.api.containers import ENGINE_CONTAINER, Container, SecurityContext
from joulescale.api.engine import EngineSpec, EnvVar, KvTransferSpec, RouterSpec
from joulescale.api.enginehook import EngineHookSpec
from joulescale.api.model import ModelCacheSpec, ModelSpec, SecretKeyRef
from joulescale.api.placement import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    GpuSpec,
    ResourceRequirements,
    Toleration,
    is_gpu_resource,
)
from joulescale.api.podtemplate import PodSpecOverride, PodTemplateOverride, is_reserved_key
from joulescale.api.resource import EnergyAwareLLMService
from joulescale.api.rollout import RolloutSpec
from joulescale.api.spec import (
    AutoscalingSpec,
    ClockBounds,
    EnergyAwareLLMServiceSpec,
    EnergySpec,
    PlannerSpec,
    RoleSpec,
    SloSpec,
    parse_spec,
)
from joulescale.api.status import Condition, EnergyAwareLLMServiceStatus, EnergyStatus, PlanStatus, RoleStatus
from joulescale.api.volumes import Volume

__all__ = [
    "API_VERSION",
    "ENGINE_CONTAINER",
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
    "Container",
    "EnergyAwareLLMService",
    "EnergyAwareLLMServiceSpec",
    "EnergyAwareLLMServiceStatus",
    "EnergySpec",
    "EnergyStatus",
    "EngineHookSpec",
    "EngineSpec",
    "EnvVar",
    "GpuSpec",
    "KvTransferSpec",
    "ModelCacheSpec",
    "ModelSpec",
    "PlanStatus",
    "PlannerSpec",
    "PodSpecOverride",
    "PodTemplateOverride",
    "ResourceRequirements",
    "RoleSpec",
    "RoleStatus",
    "RolloutSpec",
    "RouterSpec",
    "SecretKeyRef",
    "SecurityContext",
    "SloSpec",
    "Toleration",
    "Volume",
    "is_gpu_resource",
    "is_reserved_key",
    "parse_spec",
]
