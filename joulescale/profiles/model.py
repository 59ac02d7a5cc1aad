"""The versioned profile format: one (GPU, model, tensor parallel size) and its physics.

Every number that describes hardware or a model lives in a profile data file, never in code
(ARCHITECTURE.md), so a profile measured on a real GPU replaces a shipped one without code
changes. The models are strict (unknown fields are errors) so a typo in a hand-written profile
is caught at load time instead of silently falling back to a default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

Phase = Literal["prefill", "decode"]
"""Same literal as ``joulescale.control.observation.Phase`` (profiles must not import control)."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SmClocks(_Strict):
    """Supported SM clocks: a regular grid (min/max/step) or an explicit list, not both."""

    min_mhz: int | None = Field(default=None, gt=0)
    max_mhz: int | None = Field(default=None, gt=0)
    step_mhz: int | None = Field(default=None, gt=0)
    list_mhz: tuple[int, ...] | None = None
    """Explicit clocks as NVML reports them (nvmlDeviceGetSupportedGraphicsClocks)."""

    @model_validator(mode="after")
    def _one_form(self) -> SmClocks:
        grid = (self.min_mhz, self.max_mhz, self.step_mhz)
        if self.list_mhz is not None:
            if any(v is not None for v in grid):
                raise ValueError("give either list_mhz or min_mhz/max_mhz/step_mhz, not both")
            if not self.list_mhz or min(self.list_mhz) <= 0:
                raise ValueError("list_mhz must hold positive clocks")
            return self
        if self.min_mhz is None or self.max_mhz is None or self.step_mhz is None:
            raise ValueError("min_mhz, max_mhz and step_mhz are all required without list_mhz")
        if self.max_mhz < self.min_mhz:
            raise ValueError("max_mhz is below min_mhz")
        if (self.max_mhz - self.min_mhz) % self.step_mhz != 0:
            raise ValueError("max_mhz - min_mhz is not a multiple of step_mhz")
        return self

    def supported_mhz(self) -> tuple[int, ...]:
        """All supported clocks, ascending and unique."""
        if self.list_mhz is not None:
            return tuple(sorted(set(self.list_mhz)))
        if self.min_mhz is None or self.max_mhz is None or self.step_mhz is None:
            raise ValueError("min_mhz, max_mhz and step_mhz are all required without list_mhz")
        return tuple(range(self.min_mhz, self.max_mhz + 1, self.step_mhz))


class PowerModel(_Strict):
    """Busy power per GPU: P(f) = floor + (fmax - floor) * (f / f_max) ** gamma, before the cap."""

    floor_watts: float = Field(ge=0)
    fmax_watts: float = Field(gt=0)
    gamma: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> PowerModel:
        if self.fmax_watts < self.floor_watts:
            raise ValueError("fmax_watts is below floor_watts")
        return self


class PrefillLatency(_Strict):
    """t(f_max) = base + per_token * N + per_token_squared * S2, in ms (N tokens, S2 = sum of squares)."""

    base_ms: float = Field(ge=0)
    per_token_ms: float = Field(ge=0)
    per_token_squared_ms: float = Field(ge=0)


class PrefillSensitivity(_Strict):
    """Share s of the latency that scales with 1/f; small batches are less compute bound."""

    compute: float = Field(ge=0, le=1)
    short_batch: float = Field(ge=0, le=1)
    short_batch_tokens: int = Field(ge=0)
    """Batches with fewer tokens than this use ``short_batch``."""


class DecodeLatency(_Strict):
    """t(f_max) = base + per_sequence * B + per_context_token * K, in ms."""

    base_ms: float = Field(ge=0)
    per_sequence_ms: float = Field(ge=0)
    per_context_token_ms: float = Field(ge=0)


class DecodeSensitivity(_Strict):
    """s(B) = base + span * B / (B + half_batch_size): larger batches are more compute bound."""

    base: float = Field(ge=0, le=1)
    span: float = Field(ge=0, le=1)
    half_batch_size: float = Field(gt=0)

    @model_validator(mode="after")
    def _at_most_one(self) -> DecodeSensitivity:
        if self.base + self.span > 1:
            raise ValueError("base + span exceeds 1")
        return self


class PrefillPhase(_Strict):
    latency: PrefillLatency
    clock_sensitivity: PrefillSensitivity
    power: PowerModel


class DecodePhase(_Strict):
    latency: DecodeLatency
    clock_sensitivity: DecodeSensitivity
    power: PowerModel


class KvCapacityDerivation(_Strict):
    """Inputs of the KV capacity derivation (docs/profiles.md), kept so it can be re-checked."""

    weight_bytes: int = Field(gt=0)
    """Model weights in bytes, all GPUs together (parameters x bytes per parameter)."""
    gpu_memory_utilization: float = Field(gt=0, le=1)
    """Share of GPU memory the engine may use (vLLM's --gpu-memory-utilization)."""
    reserved_mib: int = Field(ge=0)
    """Per GPU: activations, CUDA graphs and the non-torch allocations outside the KV cache."""


class Source(_Strict):
    """Where numbers come from; a profile without sources is rejected."""

    fields: str = Field(min_length=1)
    """Which fields this source backs."""
    citation: str = Field(min_length=1)


class GpuProfile(_Strict):
    """Physics of one (GPU product, model, tensor parallel size); all per GPU unless stated."""

    schema_version: Literal[1]
    name: str = Field(min_length=1)
    description: str = ""
    gpu_product: str = Field(min_length=1)
    """As in the node label nvidia.com/gpu.product, e.g. NVIDIA-H100-80GB-HBM3."""
    gpu_memory_mib: int = Field(gt=0)
    model: str = Field(min_length=1)
    tensor_parallel_size: int = Field(ge=1)
    sm_clocks: SmClocks
    memory_clock_mhz: int = Field(gt=0)
    power_limit_watts: float = Field(gt=0)
    idle_power_watts: float = Field(ge=0)
    clock_settle_ms: float = Field(ge=0)
    kv_bytes_per_token: int = Field(gt=0)
    """KV cache bytes of one token over all layers and all GPUs of the instance."""
    kv_capacity_tokens: int = Field(gt=0)
    """Tokens the KV cache of one instance holds."""
    kv_capacity_derivation: KvCapacityDerivation | None = None
    prefill: PrefillPhase
    decode: DecodePhase
    source: tuple[Source, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _power_fits(self) -> GpuProfile:
        for phase in (self.prefill, self.decode):
            if phase.power.floor_watts > self.power_limit_watts:
                raise ValueError("a phase's power floor_watts exceeds power_limit_watts")
        if self.idle_power_watts > self.power_limit_watts:
            raise ValueError("idle_power_watts exceeds power_limit_watts")
        return self

    @property
    def supported_sm_clocks_mhz(self) -> tuple[int, ...]:
        """Ascending. Cached per object (see joulescale.profiles.derived)."""
        from joulescale.profiles.derived import derived  # derived imports this module

        return derived(self).clocks_mhz

    @property
    def min_sm_clock_mhz(self) -> int:
        return self.supported_sm_clocks_mhz[0]

    @property
    def max_sm_clock_mhz(self) -> int:
        return self.supported_sm_clocks_mhz[-1]
