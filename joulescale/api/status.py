"""The status of an EnergyAwareLLMService: what the operator, the planner and the agents observed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from joulescale.api.base import StatusModel

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """One condition, per the Kubernetes API conventions."""

    type: str = Field(
        description=(
            "PascalCase type: Ready, PrefillReady, DecodeReady, RouterReady, Degraded, Planned, DVFSActive."
        )
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="A CamelCase reason for machines.")
    message: str = Field(default="", description="A sentence for people.")
    last_transition_time: str = Field(
        description="When status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The generation this was computed from."
    )


class RoleStatus(StatusModel):
    """The observed state of one role's Deployment."""

    replicas: int = Field(default=0, ge=0, description="Desired replicas.")
    ready_replicas: int = Field(default=0, ge=0, description="Replicas whose engine is ready.")
    base_clock_mhz: int | None = Field(
        default=None, alias="baseClockMHz", ge=0, description="The planned base SM clock, in MHz."
    )
    ready_of_desired: str = Field(default="0/0", description="readyReplicas/replicas, for kubectl get.")


class PlanStatus(StatusModel):
    """The planner's latest decision (written by the planner loop)."""

    computed_at: str | None = Field(default=None, description="When the plan was made (RFC 3339).")
    forecast_requests_per_second: float | None = Field(
        default=None, ge=0, description="The load planned for."
    )
    prefill_replicas: int | None = Field(default=None, ge=0, description="Planned prefill replicas.")
    decode_replicas: int | None = Field(default=None, ge=0, description="Planned decode replicas.")
    prefill_base_clock_mhz: int | None = Field(
        default=None, alias="prefillBaseClockMHz", ge=0, description="Planned prefill base SM clock, in MHz."
    )
    decode_base_clock_mhz: int | None = Field(
        default=None, alias="decodeBaseClockMHz", ge=0, description="Planned decode base SM clock, in MHz."
    )
    predicted_power_watts: float | None = Field(
        default=None, ge=0, description="Predicted average GPU power, in W."
    )
    reason: str | None = Field(default=None, description="Why the planner chose this plan (or kept the last).")


class PhaseEnergy(StatusModel):
    """One phase's GPU energy over the window, from the agents' energy counters."""

    average_power_watts: float | None = Field(default=None, ge=0, description="Average GPU power, in W.")
    joules_per_output_token: float | None = Field(
        default=None, ge=0, description="This phase's GPU energy per output token of the service, in J."
    )


class EnergyStatus(StatusModel):
    """Observed energy over the last window (written by the planner loop from agent and engine metrics)."""

    window_seconds: int | None = Field(default=None, ge=0, description="The observation window, in seconds.")
    observed_at: str | None = Field(default=None, description="When the window ended (RFC 3339).")
    average_power_watts: float | None = Field(default=None, ge=0, description="Average GPU power, in W.")
    joules_per_output_token: float | None = Field(
        default=None, ge=0, description="GPU energy per output token, in J."
    )
    prefill: PhaseEnergy | None = Field(default=None, description="The prefill GPUs' share.")
    decode: PhaseEnergy | None = Field(default=None, description="The decode GPUs' share.")
    slo_attainment: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "The lower of two fractions from the engines' histograms: first tokens within the TTFT "
            "objective, and output tokens within the TPOT objective (0..1)."
        ),
    )
    slo_attainment_percent: str | None = Field(
        default=None, description="sloAttainment in percent, for kubectl get (e.g. 99.2)."
    )
    estimated_saving_percent: float | None = Field(
        default=None,
        le=100,
        description=(
            "Estimated GPU energy saved against static maximum clocks, in percent: each phase's measured "
            "energy rescaled by its profile's energy per iteration at the maximum SM clock over that at "
            "the phase's average SM clock in the window. Negative: more than at max clocks."
        ),
    )


class EnergyAwareLLMServiceStatus(StatusModel):
    """Everything observed about the service."""

    observed_generation: int | None = Field(default=None, ge=0, description="The generation last reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description=(
            "Ready, PrefillReady, DecodeReady, RouterReady, Degraded, DVFSActive (operator; "
            "DVFSActive=False NoProfile: a role has no profile for a GPU product); Planned (planner)."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    prefill: RoleStatus | None = Field(default=None, description="The prefill Deployment.")
    decode: RoleStatus | None = Field(default=None, description="The decode Deployment.")
    router: RoleStatus | None = Field(default=None, description="The router Deployment, when enabled.")
    endpoint: str | None = Field(
        default=None,
        description="Where clients connect: the router's Service when enabled, else decode's (host:port).",
    )
    plan: PlanStatus | None = Field(default=None, description="The planner's latest plan.")
    energy: EnergyStatus | None = Field(default=None, description="Observed energy.")
