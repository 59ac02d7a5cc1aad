"""The plug-in point for per-iteration clock policies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from joulescale.engines.observation import Observation


class DecisionReason(StrEnum):
    """Why a clock was chosen; exported as a metric label, so the set stays small and stable."""

    STATIC = "Static"
    IDLE = "Idle"
    SLO_FIT = "SloFit"
    ENERGY_OPTIMAL = "EnergyOptimal"
    SLACK_SPENT = "SlackSpent"
    QUEUE_PRESSURE = "QueuePressure"
    KV_PRESSURE = "KvPressure"
    MISPREDICTION_GUARD = "MispredictionGuard"
    SLO_AT_RISK = "SloAtRisk"
    HOLD = "Hold"


@dataclass(frozen=True, slots=True)
class ClockDecision:
    sm_clock_mhz: int
    reason: DecisionReason
    urgent: bool = False
    """The current clock misses the SLO: raise now even inside the minimum hold time (3.4)."""
    predicted_iteration_s: float | None = None
    """The policy's latency prediction for the next iteration at this clock, when it made one."""


@dataclass(frozen=True, slots=True)
class Slo:
    ttft_ms: float
    tpot_ms: float
    percentile: int = 99


@dataclass(frozen=True, slots=True)
class ClockBounds:
    """The service's allowed SM clock range; intersected with the device's supported clocks."""

    min_mhz: int
    max_mhz: int


class ClockPolicy(Protocol):
    """Decides the SM clock of one engine instance; one object per instance, it may keep state."""

    name: str

    def decide(self, observation: Observation) -> ClockDecision: ...
