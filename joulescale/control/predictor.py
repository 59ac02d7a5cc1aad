"""The latency predictor interface and the predictor that reads a profile's physics."""

from __future__ import annotations

from typing import Protocol

from joulescale.profiles import GpuProfile, physics


class LatencyPredictor(Protocol):
    """Predicts one engine iteration's latency at an SM clock (offline, fitted or corrected)."""

    def prefill_s(self, batch_tokens: int, squared_tokens: float, sm_clock_mhz: float) -> float:
        """A prefill batch of ``batch_tokens`` tokens whose squared prompt (chunk) lengths sum to
        ``squared_tokens``."""
        ...

    def decode_s(self, batch_size: int, context_tokens: int, sm_clock_mhz: float) -> float:
        """A decode batch of ``batch_size`` sequences over ``context_tokens`` tokens in all."""
        ...


class ProfilePredictor:
    """Predicts with the profile's own physics (the offline model when no samples were fitted)."""

    def __init__(self, profile: GpuProfile) -> None:
        self.profile = profile

    def prefill_s(self, batch_tokens: int, squared_tokens: float, sm_clock_mhz: float) -> float:
        return physics.prefill_latency_from_sums_s(self.profile, batch_tokens, squared_tokens, sm_clock_mhz)

    def decode_s(self, batch_size: int, context_tokens: int, sm_clock_mhz: float) -> float:
        return physics.decode_latency_s(self.profile, batch_size, context_tokens, sm_clock_mhz)
