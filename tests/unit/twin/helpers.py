"""Small builders shared by the twin's tests (seams, not patches)."""

from __future__ import annotations

from pathlib import Path

from joulescale.control.policy import ClockDecision, DecisionReason
from joulescale.engines.observation import Observation, Phase
from joulescale.profiles import load_profile_file
from joulescale.profiles.model import GpuProfile
from joulescale.twin.cluster import ClusterConfig, ControlFactory, InstanceControl

PROFILE_NAME = "h100-sxm-llama-70b-tp4"


def profile() -> GpuProfile:
    """The design-table physics these scenarios were built on (tests/fixtures/profiles/README.md)."""
    return load_profile_file(Path(__file__).resolve().parents[2] / "fixtures" / "profiles" / f"{PROFILE_NAME}.yaml")


class FixedClock:
    """A policy double that always asks for one clock per phase."""

    name = "fixed"

    def __init__(self, mhz: int) -> None:
        self.mhz = mhz
        self.seen: list[Observation] = []

    def decide(self, observation: Observation) -> ClockDecision:
        self.seen.append(observation)
        return ClockDecision(self.mhz, DecisionReason.STATIC)


class PassThrough:
    """An actuator double that applies every change at once."""

    def target_mhz(self, decision: ClockDecision, now_s: float, current_mhz: int) -> int | None:
        return decision.sm_clock_mhz if decision.sm_clock_mhz != current_mhz else None


def fixed_control(prefill_mhz: int, decode_mhz: int) -> ControlFactory:
    def build(phase: Phase, index: int) -> InstanceControl:
        return InstanceControl(FixedClock(prefill_mhz if phase == "prefill" else decode_mhz), PassThrough())

    return build


def small_cluster(prefill: int = 2, decode: int = 1, **changes: object) -> ClusterConfig:
    return ClusterConfig(profile(), prefill, decode, **changes)  # type: ignore[arg-type]


class AlternatingClock:
    """A policy double that asks for ``low`` and ``high`` in turn, so clocks change mid-iteration."""

    name = "alternating"

    def __init__(self, low_mhz: int, high_mhz: int) -> None:
        self.clocks_mhz = (low_mhz, high_mhz)
        self.decisions = 0

    def decide(self, observation: Observation) -> ClockDecision:
        self.decisions += 1
        return ClockDecision(self.clocks_mhz[self.decisions % 2], DecisionReason.STATIC)


def alternating_control(low_mhz: int, high_mhz: int) -> ControlFactory:
    def build(phase: Phase, index: int) -> InstanceControl:
        return InstanceControl(AlternatingClock(low_mhz, high_mhz), PassThrough())

    return build
