"""Plain-float constants derived from a profile, for the physics hot path.

Pydantic attribute chains and properties cost microseconds; the twin evaluates the physics
millions of times. The table is keyed by object identity and keeps the profile alive, so an
identity is never reused while its entry exists; ``model_copy(update=...)`` yields a new
object and therefore a fresh entry (a cached value on the model itself would be copied stale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from joulescale.profiles.model import GpuProfile, PowerModel

_TABLE_LIMIT = 1024
_CAP_CACHE_LIMIT = 1 << 16


@dataclass(frozen=True, slots=True)
class PhasePower:
    """One phase's power curve (``PowerModel``) as plain floats, with the clock the power cap
    allows per batch cached (the twin asks for the same batches over and over)."""

    floor_watts: float
    top_watts: float
    """``fmax_watts``: the power at f_max, or the top of the batch curve."""
    gamma: float
    low_watts: float | None
    """Bottom of the batch curve; None when power does not depend on the batch."""
    midpoint_log2: float
    steepness: float
    limit_watts: float
    max_mhz: float
    _caps: dict[int | None, float] = field(default_factory=dict)

    def fmax_watts(self, batch_size: int | None) -> float:
        """Power at f_max for a batch of ``batch_size`` sequences (None: the top of the curve)."""
        low = self.low_watts
        if low is None or batch_size is None:
            return self.top_watts
        x = self.steepness * (math.log2(batch_size if batch_size > 1 else 1) - self.midpoint_log2)
        if x < -700.0:
            return low
        return low + (self.top_watts - low) / (1.0 + math.exp(-x))

    def cap_mhz(self, batch_size: int | None) -> float:
        """The highest clock at which this batch stays under the power limit (SwPowerCap)."""
        key = None if self.low_watts is None else batch_size
        cap = self._caps.get(key)
        if cap is None:
            top = self.fmax_watts(key)
            if top <= self.limit_watts or top <= self.floor_watts:
                cap = self.max_mhz
            else:
                share = max(0.0, (self.limit_watts - self.floor_watts) / (top - self.floor_watts))
                cap = self.max_mhz * math.pow(share, 1.0 / self.gamma)
            if len(self._caps) >= _CAP_CACHE_LIMIT:
                self._caps.clear()
            self._caps[key] = cap
        return cap


@dataclass(frozen=True, slots=True)
class Derived:
    profile: GpuProfile
    clocks_mhz: tuple[int, ...]
    min_mhz: float
    max_mhz: float
    tensor_parallel_size: int
    power_limit_watts: float
    idle_power_watts: float
    prefill_power: PhasePower
    decode_power: PhasePower
    prefill_ms: tuple[float, float, float]
    """base, per token, per squared token"""
    prefill_sensitivity: tuple[float, float, int]
    """compute, short batch, short batch tokens"""
    decode_ms: tuple[float, float, float]
    """base, per sequence, per context token"""
    decode_sensitivity: tuple[float, float, float]
    """base, span, half batch size"""
    overhead_ms: tuple[float, float]
    """The step overhead's fixed and per-sequence parts (zeros without one)."""
    overhead_busy_share: float
    """Share of the overhead the GPU spends busy (1 without one: nothing idles)."""


_table: dict[int, Derived] = {}


def derived(profile: GpuProfile) -> Derived:
    """The profile's constants, built on first use."""
    entry = _table.get(id(profile))
    if entry is None or entry.profile is not profile:
        entry = _build(profile)
        if len(_table) >= _TABLE_LIMIT:
            _table.clear()
        _table[id(profile)] = entry
    return entry


def _build(profile: GpuProfile) -> Derived:
    clocks = profile.sm_clocks.supported_mhz()
    max_mhz = float(clocks[-1])
    prefill, decode = profile.prefill, profile.decode
    overhead = profile.step_overhead
    return Derived(
        profile=profile,
        clocks_mhz=clocks,
        min_mhz=float(clocks[0]),
        max_mhz=max_mhz,
        tensor_parallel_size=profile.tensor_parallel_size,
        power_limit_watts=profile.power_limit_watts,
        idle_power_watts=profile.idle_power_watts,
        prefill_power=_power(prefill.power, profile.power_limit_watts, max_mhz),
        decode_power=_power(decode.power, profile.power_limit_watts, max_mhz),
        prefill_ms=(
            prefill.latency.base_ms,
            prefill.latency.per_token_ms,
            prefill.latency.per_token_squared_ms,
        ),
        prefill_sensitivity=(
            prefill.clock_sensitivity.compute,
            prefill.clock_sensitivity.short_batch,
            prefill.clock_sensitivity.short_batch_tokens,
        ),
        decode_ms=(
            decode.latency.base_ms,
            decode.latency.per_sequence_ms,
            decode.latency.per_context_token_ms,
        ),
        decode_sensitivity=(
            decode.clock_sensitivity.base,
            decode.clock_sensitivity.span,
            decode.clock_sensitivity.half_batch_size,
        ),
        overhead_ms=(0.0, 0.0) if overhead is None else (overhead.fixed_ms, overhead.per_sequence_ms),
        overhead_busy_share=1.0 if overhead is None else overhead.gpu_busy_share,
    )


def _power(power: PowerModel, limit_watts: float, max_mhz: float) -> PhasePower:
    batch = power.batch
    return PhasePower(
        floor_watts=power.floor_watts,
        top_watts=power.fmax_watts,
        gamma=power.gamma,
        low_watts=None if batch is None else batch.low_watts,
        midpoint_log2=0.0 if batch is None else batch.midpoint_log2,
        steepness=1.0 if batch is None else batch.steepness,
        limit_watts=limit_watts,
        max_mhz=max_mhz,
    )
