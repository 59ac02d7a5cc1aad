"""Candidate instances: (phase, profile, TP degree, base clock), and their tables.

Every shipped (or given) profile of the served model whose weights fit and whose KV cache holds
at least one full engine step (``USEFUL_KV_TOKENS``) is a candidate for both phases, at a few
base clocks. A candidate's table says what one instance of it can do on a length mix: its
capacity and its power. The twin computes tables (``joulescale.twin.candidate_tables``); the
planner only reads them through ``CandidateSource``, so the operator and the twin plan alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.clocks import levels_mhz
from joulescale.control.policy import Slo
from joulescale.engines.observation import Phase
from joulescale.planning.forecast import LengthMix
from joulescale.profiles.model import GpuProfile

PHASES: tuple[Phase, Phase] = ("prefill", "decode")
USEFUL_KV_TOKENS = DEFAULT_TOKEN_BUDGET
"""An instance whose KV cache cannot hold one full step of the engine's token budget is no candidate."""
DEFAULT_CLOCK_LEVELS = 4
"""Base clocks per (profile, phase): evenly from ``DEFAULT_LOWEST_CLOCK_SHARE`` x f_max to f_max."""
DEFAULT_LOWEST_CLOCK_SHARE = 0.6
"""Below about 0.6 f_max, energy per token rises again on the shipped profiles (docs/physics.md):
lower base clocks are never worth a candidate; the fine tier still goes lower within a step."""


@dataclass(frozen=True, slots=True, order=True)
class Candidate:
    phase: Phase
    profile: str
    gpu_product: str
    tensor_parallel_size: int
    base_clock_mhz: int

    @property
    def gpus(self) -> int:
        return self.tensor_parallel_size

    @property
    def label(self) -> str:
        return f"{self.phase} TP{self.tensor_parallel_size} {self.profile} @ {self.base_clock_mhz} MHz"


@dataclass(frozen=True, slots=True)
class CandidateTable:
    """What one instance of ``candidate`` does on one length mix under one SLO."""

    candidate: Candidate
    capacity_rps: float
    """Highest request rate at which one instance meets its phase's SLO percentile (0: never)."""
    idle_watts: float
    """The instance (all its GPUs) powered and idle."""
    base_watts: float
    """Power of a powered instance as its load tends to zero (the fit's intercept, at least idle)."""
    joules_per_request: float
    """Energy per request served above ``base_watts`` (the fit's slope over ``power_by_share``)."""
    power_by_share: tuple[tuple[float, float], ...]
    """(load share of capacity, mean instance watts) as simulated, 0 (idle) included."""

    def power_watts(self, rate_rps: float) -> float:
        """Mean instance power at ``rate_rps`` (the linear model the program minimises)."""
        return self.base_watts + self.joules_per_request * rate_rps


class CandidateSource(Protocol):
    """Tables for every candidate on a length mix (cached by the implementation)."""

    def candidates(self) -> Sequence[Candidate]: ...

    def tables(self, mix: LengthMix, slo: Slo) -> list[CandidateTable]: ...


def fits(profile: GpuProfile) -> bool:
    """Weights fit and the KV cache holds a full step (a profile with weights too large has 0 KV)."""
    return profile.kv_capacity_tokens >= USEFUL_KV_TOKENS


def base_clocks_mhz(profile: GpuProfile, levels: int = DEFAULT_CLOCK_LEVELS,
                    lowest_share: float = DEFAULT_LOWEST_CLOCK_SHARE) -> tuple[int, ...]:
    clocks = profile.supported_sm_clocks_mhz
    return levels_mhz(clocks, levels, lowest_share * clocks[-1])


def enumerate_candidates(profiles: Iterable[GpuProfile], model: str, levels: int = DEFAULT_CLOCK_LEVELS,
                         products: Iterable[str] | None = None) -> list[Candidate]:
    """Every candidate of ``model`` (optionally only on ``products``), sorted."""
    wanted = None if products is None else set(products)
    found: set[Candidate] = set()
    for profile in profiles:
        if profile.model != model or not fits(profile):
            continue
        if wanted is not None and profile.gpu_product not in wanted:
            continue
        for phase in PHASES:
            for clock in base_clocks_mhz(profile, levels):
                found.add(Candidate(phase, profile.name, profile.gpu_product, profile.tensor_parallel_size, clock))
    return sorted(found)
