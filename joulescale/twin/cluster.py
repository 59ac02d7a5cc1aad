"""What one twin run simulates: the cluster's shape and engine settings, and the control seam."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.controller import Role
from joulescale.control.policy import ClockDecision, ClockPolicy
from joulescale.engines.dialects import ENGINE_NAMES
from joulescale.engines.observation import Phase
from joulescale.profiles.model import GpuProfile
from joulescale.twin.views import ViewName


class Actuator(Protocol):
    """Turns a policy's decision into a clock to request now, or None to leave the clock alone
    (the agent's actuation rules, docs/policies.md)."""

    def target_mhz(self, decision: ClockDecision, now_s: float, current_mhz: int) -> int | None: ...


@dataclass(frozen=True, slots=True)
class InstanceControl:
    policy: ClockPolicy
    actuator: Actuator
    observes: bool = True
    """False for a policy whose decision never depends on the observation (static clocks): it is
    asked once at start and never scraped for, which changes no result and saves the twin time."""


ControlFactory = Callable[[Role, int], InstanceControl]
"""Builds the control of one instance from its role (a phase, or aggregated) and index; called
once per instance."""

Topology = Literal["disaggregated", "aggregated"]
TOPOLOGIES: tuple[Topology, ...] = ("disaggregated", "aggregated")
"""disaggregated: P/D, prefill and decode on their own instances, the KV cache sent between them;
aggregated: every instance runs both phases in one step (``joulescale.engines.model.aggregated``)."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A P/D cluster of identical instances of one profile, or an aggregated one (``topology``)."""

    profile: GpuProfile
    prefill_instances: int
    decode_instances: int
    prefill_token_budget: int = DEFAULT_TOKEN_BUDGET
    """Most tokens one engine step schedules (chunked prefill splits a longer prompt)."""
    decode_max_running: int = 512
    """Most sequences in a decode batch (vLLM's --max-num-seqs)."""
    kv_watermark: float = 0.01
    """Share of the KV cache kept free when admitting, so running requests can grow."""
    kv_medium: str = "infiniband"
    view: ViewName = "metrics"
    scrape_period_s: float = 0.05
    """How often the agent scrapes /metrics in the metrics-only view (20 Hz)."""
    scrape_delay_s: float = 0.01
    """How long after the scrape the agent acts on it (HTTP + parsing)."""
    engine: str = "vllm"
    """The serving engine simulated (``joulescale.engines.ENGINE_NAMES``): which metrics its
    /metrics page holds, with which buckets, and when they change."""
    clock_settle_s: float | None = None
    """Delay before a new clock takes effect; None uses the profile's clock_settle_ms."""
    prefill_router: str = "capacity-weighted"
    decode_router: str = "capacity-weighted"
    prefill_profile: GpuProfile | None = None
    """Prefill instances' profile when it differs (e.g. TP8 prefill, TP4 decode); same model."""
    topology: Topology = "disaggregated"
    aggregated_instances: int = 0
    """Aggregated topology: how many instances of ``profile`` (the P/D counts are then 0). They
    take the decode settings (max running, watermark), the token budget and the decode router."""

    def __post_init__(self) -> None:
        if self.topology == "aggregated":
            if self.aggregated_instances < 1 or self.prefill_instances or self.decode_instances:
                raise ValueError("an aggregated cluster needs at least one aggregated instance and no P/D instance")
            if self.prefill_profile is not None:
                raise ValueError("an aggregated cluster runs one profile: no prefill profile")
            if self.prefill_token_budget < self.decode_max_running:
                raise ValueError("an aggregated instance's token budget must hold every running decode")
        elif self.topology != "disaggregated":
            raise ValueError(f"unknown topology {self.topology!r}; known: {', '.join(TOPOLOGIES)}")
        elif self.prefill_instances < 1 or self.decode_instances < 1 or self.aggregated_instances:
            raise ValueError("a P/D cluster needs at least one prefill and one decode instance")
        if self.scrape_period_s <= 0 or self.scrape_delay_s < 0:
            raise ValueError("scrape_period_s must be positive and scrape_delay_s non-negative")
        if self.prefill_profile is not None and self.prefill_profile.model != self.profile.model:
            raise ValueError("prefill and decode profiles must serve the same model")
        if self.engine not in ENGINE_NAMES:
            raise ValueError(f"unknown engine {self.engine!r}; known: {', '.join(ENGINE_NAMES)}")

    def profile_of(self, phase: Phase) -> GpuProfile:
        if phase == "prefill" and self.prefill_profile is not None:
            return self.prefill_profile
        return self.profile

    def settle_s(self, phase: Phase) -> float:
        if self.clock_settle_s is not None:
            return self.clock_settle_s
        return self.profile_of(phase).clock_settle_ms / 1000.0

    @property
    def gpus(self) -> int:
        if self.topology == "aggregated":
            return self.aggregated_instances * self.profile.tensor_parallel_size
        return (self.prefill_instances * self.profile_of("prefill").tensor_parallel_size
                + self.decode_instances * self.profile.tensor_parallel_size)

    def describe(self) -> dict[str, object]:
        return {
            "topology": self.topology,
            "aggregated_instances": self.aggregated_instances,
            "profile": self.profile.name,
            "prefill_profile": self.profile_of("prefill").name,
            "gpus": self.gpus,
            "tensor_parallel_size": {"prefill": self.profile_of("prefill").tensor_parallel_size,
                                     "decode": self.profile.tensor_parallel_size},
            "prefill_instances": self.prefill_instances,
            "decode_instances": self.decode_instances,
            "prefill_token_budget": self.prefill_token_budget,
            "decode_max_running": self.decode_max_running,
            "kv_medium": self.kv_medium,
            "view": self.view,
            "scrape_period_s": self.scrape_period_s,
            "scrape_delay_s": self.scrape_delay_s,
            "engine": self.engine,
            "clock_settle_s": self.settle_s("decode"),
            "power_limit_watts": self.profile.power_limit_watts,
            "prefill_router": self.prefill_router,
            "decode_router": self.decode_router,
        }
