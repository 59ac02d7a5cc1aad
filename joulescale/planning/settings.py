"""The planner's settings, with units, checked at construction."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from joulescale.control.policy import Slo
from joulescale.planning.forecast import DEFAULT_FORECASTER, FORECASTERS

DEFAULT_INTERVAL_S = 300.0
"""Five minutes: BiScale's coarse-tier interval."""
DEFAULT_MARGIN = 0.2
"""Capacity kept above the forecast, per phase (20 %)."""
DEFAULT_MEMORY_INTERVALS = 6
"""The memory's default length in planner intervals (thirty minutes at 300 s): how long the burst
rate, the longest prompt and the starting placement are remembered (``planning.memory``).
Chosen a priori, not fitted: several times the planner's reaction time (an interval plus a
start-up, 8 minutes by default), so a burst that recurs within it finds its capacity held; a
sustained fall is followed after it."""
DEFAULT_STARTUP_S = 180.0
"""Seconds before a new replica serves: pod scheduling, image already cached, plus loading a 70B
model's weights and warming the engine (docs/planner.md cites the public figures behind it)."""


@dataclass(frozen=True, slots=True)
class ReplicaBounds:
    """Min and max replicas per role, as ``spec.prefill.autoscaling`` / ``spec.decode.autoscaling``."""

    prefill_min: int = 1
    prefill_max: int = 1024
    decode_min: int = 1
    decode_max: int = 1024

    def __post_init__(self) -> None:
        for low, high, role in ((self.prefill_min, self.prefill_max, "prefill"),
                                (self.decode_min, self.decode_max, "decode")):
            if low < 0 or high < low:
                raise ValueError(f"{role}: need 0 <= min <= max replicas, got {low}..{high}")


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    slo: Slo
    gpu_budget: Mapping[str, int]
    """GPUs the service may hold, per GPU product (``nvidia.com/gpu.product``)."""
    replicas: ReplicaBounds = field(default_factory=ReplicaBounds)
    interval_s: float = DEFAULT_INTERVAL_S
    margin: float = DEFAULT_MARGIN
    startup_s: float = DEFAULT_STARTUP_S
    forecaster: str = DEFAULT_FORECASTER
    confirm_intervals: int = 2
    """A change that no SLO forces waits until the program proposed it this many intervals in a row."""
    memory_s: float | None = None
    """How long the burst rate, the longest lengths and the starting placement are remembered
    (None: ``DEFAULT_MEMORY_INTERVALS`` intervals; 0: plan from the forecast alone)."""
    shape_payback_s: float | None = None
    """A change of TP degree must repay its start-up energy within this time (None: one interval,
    the least a plan runs before the next decision could undo it)."""

    @property
    def remember_s(self) -> float:
        return DEFAULT_MEMORY_INTERVALS * self.interval_s if self.memory_s is None else self.memory_s

    @property
    def payback_s(self) -> float:
        return self.interval_s if self.shape_payback_s is None else self.shape_payback_s

    def __post_init__(self) -> None:
        if not self.gpu_budget or any(n < 0 for n in self.gpu_budget.values()):
            raise ValueError("gpu_budget needs at least one product, with a non-negative count")
        for name, value in (("interval_s", self.interval_s), ("startup_s", self.startup_s), ("margin", self.margin),
                            ("memory_s", self.remember_s)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if self.shape_payback_s is not None and not (math.isfinite(self.shape_payback_s)
                                                     and self.shape_payback_s >= 0):
            raise ValueError(f"shape_payback_s must be finite and >= 0, got {self.shape_payback_s}")
        if self.interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if self.forecaster not in FORECASTERS:
            raise ValueError(f"unknown forecaster {self.forecaster!r}; known: {', '.join(FORECASTERS)}")
        if self.confirm_intervals < 1:
            raise ValueError("confirm_intervals must be at least 1")
