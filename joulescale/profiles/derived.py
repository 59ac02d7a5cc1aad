"""Plain-float constants derived from a profile, for the physics hot path.

Pydantic attribute chains and properties cost microseconds; the twin evaluates the physics
millions of times. The table is keyed by object identity and keeps the profile alive, so an
identity is never reused while its entry exists; ``model_copy(update=...)`` yields a new
object and therefore a fresh entry (a cached value on the model itself would be copied stale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from joulescale.profiles.model import GpuProfile, PowerModel

_TABLE_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class Derived:
    profile: GpuProfile
    clocks_mhz: tuple[int, ...]
    min_mhz: float
    max_mhz: float
    tensor_parallel_size: int
    power_limit_watts: float
    idle_power_watts: float
    prefill_cap_mhz: float
    decode_cap_mhz: float
    prefill_power: tuple[float, float, float]
    """floor, fmax - floor, gamma"""
    decode_power: tuple[float, float, float]
    prefill_ms: tuple[float, float, float]
    """base, per token, per squared token"""
    prefill_sensitivity: tuple[float, float, int]
    """compute, short batch, short batch tokens"""
    decode_ms: tuple[float, float, float]
    """base, per sequence, per context token"""
    decode_sensitivity: tuple[float, float, float]
    """base, span, half batch size"""


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


def _cap_mhz(power: PowerModel, limit_watts: float, max_mhz: float) -> float:
    if power.fmax_watts <= limit_watts or power.fmax_watts <= power.floor_watts:
        return max_mhz
    share = max(0.0, (limit_watts - power.floor_watts) / (power.fmax_watts - power.floor_watts))
    return max_mhz * math.pow(share, 1.0 / power.gamma)


def _build(profile: GpuProfile) -> Derived:
    clocks = profile.sm_clocks.supported_mhz()
    max_mhz = float(clocks[-1])
    prefill, decode = profile.prefill, profile.decode
    return Derived(
        profile=profile,
        clocks_mhz=clocks,
        min_mhz=float(clocks[0]),
        max_mhz=max_mhz,
        tensor_parallel_size=profile.tensor_parallel_size,
        power_limit_watts=profile.power_limit_watts,
        idle_power_watts=profile.idle_power_watts,
        prefill_cap_mhz=_cap_mhz(prefill.power, profile.power_limit_watts, max_mhz),
        decode_cap_mhz=_cap_mhz(decode.power, profile.power_limit_watts, max_mhz),
        prefill_power=_power(prefill.power),
        decode_power=_power(decode.power),
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
    )


def _power(power: PowerModel) -> tuple[float, float, float]:
    return power.floor_watts, power.fmax_watts - power.floor_watts, power.gamma
