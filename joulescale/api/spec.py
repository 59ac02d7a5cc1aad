"""The spec of an EnergyAwareLLMService: what the user declares."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.config import JsonDict

from joulescale.api.base import ApiModel, cel, validations
from joulescale.api.energy import PolicyTuning
from joulescale.api.engine import EngineSpec, KvTransferSpec, RouterSpec
from joulescale.api.model import ModelSpec
from joulescale.api.placement import GpuSpec, ResourceRequirements, Toleration
from joulescale.api.podtemplate import PodTemplateOverride
from joulescale.api.rollout import RolloutSpec
from joulescale.control.registry import OFF, policy_entries, policy_names
from joulescale.profiles import sm_clock_envelope_mhz

SloPercentile = Literal[50, 90, 95, 99]


class AutoscalingSpec(ApiModel):
    """Replica bounds within which the planner chooses the replica count."""

    model_config = validations(
        cel("self.minReplicas <= self.maxReplicas", "minReplicas must be <= maxReplicas", ".minReplicas")
    )

    min_replicas: int = Field(
        default=1, ge=0, le=1024, description="The fewest replicas the planner may choose."
    )
    max_replicas: int = Field(ge=1, le=1024, description="The most replicas the planner may choose.")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be <= maxReplicas")
        return self


class RoleSpec(ApiModel):
    """One role (prefill or decode): how many replicas, how wide, and where they run."""

    model_config = validations(
        cel(
            "has(self.replicas) != has(self.autoscaling)",
            "set exactly one of replicas (fixed) or autoscaling (the planner owns the count)",
            ".replicas",
        )
    )

    replicas: int | None = Field(
        default=None, ge=0, le=1024, description="A fixed replica count. Mutually exclusive with autoscaling."
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Let the planner choose the replica count within bounds. Excludes replicas."
    )
    tensor_parallel_size: int = Field(
        default=1,
        ge=1,
        le=64,
        description="GPUs per replica (tensor parallel size); each pod requests this many.",
    )
    gpu: GpuSpec = Field(description="The GPU products this role may run on.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="Non-GPU resources of the engine container.",
        json_schema_extra={"default": {}},
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Extra node labels the pods require, besides the GPU product."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Extra tolerations, besides the nvidia.com/gpu one.", max_length=32
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="How pods are replaced on a change; default one at a time, with no surge pod.",
        json_schema_extra={"default": {}},
    )
    pod_template: PodTemplateOverride | None = Field(
        default=None,
        description=(
            "An allowlisted partial pod template merged over the rendered one: env, envFrom, "
            "volumeMounts, resources and securityContext (less privilege only) of the engine "
            "container, unprivileged sidecars, volumes of safe types, labels and annotations "
            "outside joulescale.io, tolerations, affinity, priorityClassName, imagePullSecrets."
        ),
    )

    @model_validator(mode="after")
    def _one_replica_owner(self) -> RoleSpec:
        if (self.replicas is None) == (self.autoscaling is None):
            raise ValueError(
                "set exactly one of replicas (fixed) or autoscaling (the planner owns the count)"
            )
        return self


class SloSpec(ApiModel):
    """The latency objectives the energy policies must keep."""

    ttft_ms: int = Field(ge=1, le=600_000, description="Time to first token objective, in milliseconds.")
    tpot_ms: int = Field(ge=1, le=60_000, description="Time per output token objective, in milliseconds.")
    percentile: SloPercentile = Field(
        default=99, description="The latency percentile the objectives apply to."
    )


SM_CLOCK_FLOOR_MHZ, SM_CLOCK_CEILING_MHZ = sm_clock_envelope_mhz()
"""No GPU the agent can control (one with a shipped profile) clocks outside this range."""


class ClockBounds(ApiModel):
    """SM clock bounds; the agent never sets a clock outside them or the device's own range."""

    model_config = validations(
        cel(
            "!has(self.minMHz) || !has(self.maxMHz) || self.minMHz <= self.maxMHz",
            "minMHz must be <= maxMHz",
            ".minMHz",
        )
    )

    min_mhz: int | None = Field(
        default=None,
        alias="minMHz",
        ge=SM_CLOCK_FLOOR_MHZ,
        le=SM_CLOCK_CEILING_MHZ,
        description="Lowest SM clock, in MHz; default the device's.",
    )
    max_mhz: int | None = Field(
        default=None,
        alias="maxMHz",
        ge=SM_CLOCK_FLOOR_MHZ,
        le=SM_CLOCK_CEILING_MHZ,
        description="Highest SM clock, in MHz; default the device's.",
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ClockBounds:
        if self.min_mhz is not None and self.max_mhz is not None and self.min_mhz > self.max_mhz:
            raise ValueError("minMHz must be <= maxMHz")
        return self


class PlannerSpec(ApiModel):
    """The coarse planning loop (replicas and base clocks)."""

    interval_seconds: int = Field(default=300, ge=10, le=86_400, description="Seconds between two plans.")
    safety_margin_percent: int = Field(
        default=10, ge=0, le=100, description="Head-room added to the forecast load, in percent."
    )
    memory_seconds: int | None = Field(
        default=None, ge=0, le=604_800,
        description="How long the planner remembers the burst rate, the longest lengths and the "
        "placement it started from (unset: six intervals; 0: plan from the forecast alone).",
    )


def energy_policy_names() -> tuple[str, ...]:
    """What spec.energy.policy may be: the policy registry's names, and off."""
    return (*policy_names(), OFF)


def _policy_enum(schema: JsonDict) -> None:
    # Read at schema generation, so the CRD lists every registered policy.
    schema["enum"] = list(energy_policy_names())
    schema["description"] = "The clock policy (off: leave the clocks alone). " + "; ".join(
        f"{entry.name}: {entry.summary}" for entry in policy_entries()
    ) + "."


class EnergySpec(PolicyTuning):
    """How JouleScale saves energy for this service: the policy, its settings, bounds and planning."""

    policy: str = Field(default="joulescale", json_schema_extra=_policy_enum)

    @field_validator("policy")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in energy_policy_names():
            raise ValueError(f"unknown policy {value!r}; known: {', '.join(energy_policy_names())}")
        return value

    clocks: ClockBounds = Field(
        default_factory=ClockBounds, description="SM clock bounds.", json_schema_extra={"default": {}}
    )
    planner: PlannerSpec = Field(
        default_factory=PlannerSpec, description="The planning loop.", json_schema_extra={"default": {}}
    )


class EnergyAwareLLMServiceSpec(ApiModel):
    """An LLM served with prefill/decode disaggregation under latency SLOs, at the least GPU energy."""

    model_config = validations(
        cel(
            "self.engine.name != 'vllm' || !has(self.kvTransfer) || !has(self.kvTransfer.backend)",
            "kvTransfer.backend is for sglang; vllm takes kvTransfer.connector",
            ".kvTransfer.backend",
        ),
        cel(
            "self.engine.name != 'sglang' || !has(self.kvTransfer) || !has(self.kvTransfer.connector)",
            "kvTransfer.connector is for vllm; sglang takes kvTransfer.backend",
            ".kvTransfer.connector",
        ),
    )

    model: ModelSpec = Field(description="The model to serve.")
    engine: EngineSpec = Field(description="The inference engine of the prefill and decode pods.")
    kv_transfer: KvTransferSpec = Field(
        default_factory=KvTransferSpec,
        description="How the KV cache moves from prefill to decode.",
        json_schema_extra={"default": {}},
    )
    prefill: RoleSpec = Field(description="The prefill role.")
    decode: RoleSpec = Field(description="The decode role.")
    router: RouterSpec = Field(
        default_factory=RouterSpec, description="The P/D router in front.", json_schema_extra={"default": {}}
    )
    slo: SloSpec = Field(description="Latency objectives.")
    energy: EnergySpec = Field(
        default_factory=EnergySpec, description="Energy policy.", json_schema_extra={"default": {}}
    )

    @model_validator(mode="after")
    def _kv_transfer_matches_engine(self) -> EnergyAwareLLMServiceSpec:
        if self.engine.name == "vllm" and self.kv_transfer.backend is not None:
            raise ValueError("kvTransfer.backend is for sglang; vllm takes kvTransfer.connector")
        if self.engine.name == "sglang" and self.kv_transfer.connector is not None:
            raise ValueError("kvTransfer.connector is for vllm; sglang takes kvTransfer.backend")
        return self


def parse_spec(raw: dict[str, Any]) -> EnergyAwareLLMServiceSpec:
    """The spec from its wire form; raises pydantic.ValidationError on what the schema let through."""
    return EnergyAwareLLMServiceSpec.model_validate(raw)
