"""The versioned profile format: one (GPU, model, tensor parallel size) and its physics.

Every number that describes hardware or a model lives in a profile data file, never in code
(docs/architecture.md), so a profile measured on a real GPU replaces a shipped one without code
changes. The models are strict (unknown fields are errors) so a typo in a hand-written profile
is caught at load time instead of silently falling back to a default.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1

Phase = Literal["prefill", "decode"]
"""Same literal as ``joulescale.engines.observation.Phase`` (profiles sit below engines and never import it)."""


MAX_CLOCK_MHZ = 10_000
"""No GPU clocks its SMs (or memory) above 10 GHz."""
MAX_WATTS = 10_000.0
"""Data-centre GPU boards draw under 2 kW; 10 kW is an upper bound for any future part."""
MAX_MS = 3_600_000.0
"""An hour: no iteration base time, per-token cost or settle time comes close."""
MAX_TOKENS = 2**40
MAX_MIB = 2**24
"""16 TiB of memory per GPU."""
MAX_CLOCK_LIST = 4096
"""NVML lists about a hundred supported clocks."""
MAX_TEXT = 4096


class _Strict(BaseModel):
    """Frozen, unknown fields refused, strict types (no "700" or true where a number goes) and
    finite floats only: a hand-written or hostile profile fails at load time, naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class SmClocks(_Strict):
    """Supported SM clocks: a regular grid (min/max/step) or an explicit list, not both."""

    min_mhz: int | None = Field(default=None, gt=0, le=MAX_CLOCK_MHZ)
    max_mhz: int | None = Field(default=None, gt=0, le=MAX_CLOCK_MHZ)
    step_mhz: int | None = Field(default=None, gt=0, le=MAX_CLOCK_MHZ)
    list_mhz: tuple[int, ...] | None = Field(default=None, max_length=MAX_CLOCK_LIST)
    """Explicit clocks as NVML reports them (nvmlDeviceGetSupportedGraphicsClocks)."""

    @model_validator(mode="after")
    def _one_form(self) -> SmClocks:
        grid = (self.min_mhz, self.max_mhz, self.step_mhz)
        if self.list_mhz is not None:
            if any(v is not None for v in grid):
                raise ValueError("give either list_mhz or min_mhz/max_mhz/step_mhz, not both")
            clocks = self.list_mhz
            if not clocks or min(clocks) <= 0 or max(clocks) > MAX_CLOCK_MHZ:
                raise ValueError(f"list_mhz must hold clocks in [1, {MAX_CLOCK_MHZ}] MHz")
            return self
        if self.min_mhz is None or self.max_mhz is None or self.step_mhz is None:
            raise ValueError("min_mhz, max_mhz and step_mhz are all required without list_mhz")
        if self.max_mhz < self.min_mhz:
            raise ValueError("max_mhz is below min_mhz")
        if (self.max_mhz - self.min_mhz) % self.step_mhz != 0:
            raise ValueError("max_mhz - min_mhz is not a multiple of step_mhz")
        return self

    def supported_mhz(self) -> tuple[int, ...]:
        """All supported clocks, ascending and unique (cached by value: the twin asks often)."""
        return _supported_mhz(self.list_mhz, self.min_mhz, self.max_mhz, self.step_mhz)


@lru_cache(maxsize=256)
def _supported_mhz(
    list_mhz: tuple[int, ...] | None, min_mhz: int | None, max_mhz: int | None, step_mhz: int | None
) -> tuple[int, ...]:
    """Keyed by the clock values, not the object, so ``model_copy(update=...)`` never sees a stale grid."""
    if list_mhz is not None:
        return tuple(sorted(set(list_mhz)))
    if min_mhz is None or max_mhz is None or step_mhz is None:
        raise ValueError("min_mhz, max_mhz and step_mhz are all required without list_mhz")
    return tuple(range(min_mhz, max_mhz + 1, step_mhz))


MAX_LOG2_BATCH = 40.0
"""log2 of the largest batch a step can hold (``MAX_TOKENS``)."""


class BatchPower(_Strict):
    """How the power at f_max rises with the batch: a logistic in log2(batch) (docs/physics.md,
    "Power"). ``fmax_watts`` of the phase is the top of the curve, ``low_watts`` its bottom."""

    low_watts: float = Field(ge=0, le=MAX_WATTS)
    """Power at f_max of the smallest batches."""
    midpoint_log2: float = Field(ge=0, le=MAX_LOG2_BATCH)
    """log2 of the batch halfway between ``low_watts`` and ``fmax_watts``."""
    steepness: float = Field(gt=0, le=100)
    """Per doubling of the batch, at the midpoint (the logistic's rate in log2(batch))."""


class PowerModel(_Strict):
    """Busy power per GPU: P(f, B) = floor + (P_fmax(B) - floor) * (f / f_max) ** gamma, before the cap.

    Without ``batch``, P_fmax(B) = ``fmax_watts`` for every batch B; with it, P_fmax(B) =
    low + (fmax_watts - low) / (1 + exp(-steepness * (log2 B - midpoint_log2)))."""

    floor_watts: float = Field(ge=0, le=MAX_WATTS)
    fmax_watts: float = Field(gt=0, le=MAX_WATTS)
    gamma: float = Field(gt=0, le=100)
    batch: BatchPower | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PowerModel:
        if self.fmax_watts < self.floor_watts:
            raise ValueError("fmax_watts is below floor_watts")
        if self.batch is not None and not self.floor_watts <= self.batch.low_watts <= self.fmax_watts:
            raise ValueError("batch.low_watts must lie between floor_watts and fmax_watts")
        return self


class PrefillLatency(_Strict):
    """t(f_max) = base + per_token * N + per_token_squared * S2, in ms (N tokens, S2 = sum of squares)."""

    base_ms: float = Field(ge=0, le=MAX_MS)
    per_token_ms: float = Field(ge=0, le=MAX_MS)
    per_token_squared_ms: float = Field(ge=0, le=MAX_MS)


class PrefillSensitivity(_Strict):
    """Share s of the latency that scales with 1/f; small batches are less compute bound."""

    compute: float = Field(ge=0, le=1)
    short_batch: float = Field(ge=0, le=1)
    short_batch_tokens: int = Field(ge=0, le=MAX_TOKENS)
    """Batches with fewer tokens than this use ``short_batch``."""


class DecodeLatency(_Strict):
    """t(f_max) = base + per_sequence * B + per_context_token * K, in ms."""

    base_ms: float = Field(ge=0, le=MAX_MS)
    per_sequence_ms: float = Field(ge=0, le=MAX_MS)
    per_context_token_ms: float = Field(ge=0, le=MAX_MS)


class DecodeSensitivity(_Strict):
    """s(B) = base + span * B / (B + half_batch_size): larger batches are more compute bound."""

    base: float = Field(ge=0, le=1)
    span: float = Field(ge=0, le=1)
    half_batch_size: float = Field(gt=0, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _at_most_one(self) -> DecodeSensitivity:
        if self.base + self.span > 1:
            raise ValueError("base + span exceeds 1")
        return self


class StepOverhead(_Strict):
    """Time of every engine step that the latency coefficients leave out, in ms:
    ``fixed_ms + per_sequence_ms * sequences in the step``, the same at every SM clock
    (docs/physics.md, "Step overhead"). A kernel database times the GPU's kernels only; a real
    engine also schedules, prepares inputs and samples between them, and one without
    overlap (vLLM 0.11 without async scheduling) adds that to every step."""

    fixed_ms: float = Field(ge=0, le=MAX_MS)
    per_sequence_ms: float = Field(ge=0, le=MAX_MS)
    """Per sequence scheduled in the step (decodes and prompts with a chunk)."""
    gpu_busy_share: float = Field(ge=0, le=1)
    """Share of the overhead during which the GPU runs kernels and draws the step's busy power
    (work the database leaves out, e.g. sampling); during the rest it waits for the host and
    draws ``idle_power_watts``."""


class PrefillPhase(_Strict):
    latency: PrefillLatency
    clock_sensitivity: PrefillSensitivity
    power: PowerModel


class DecodePhase(_Strict):
    latency: DecodeLatency
    clock_sensitivity: DecodeSensitivity
    power: PowerModel


class KvCapacityDerivation(_Strict):
    """Inputs of the KV capacity derivation (docs/physics.md, "KV-cache capacity"), kept so it can be re-checked."""

    weight_bytes: int = Field(gt=0, le=2**60)
    """Model weights in bytes, all GPUs together (parameters x bytes per parameter)."""
    gpu_memory_utilization: float = Field(gt=0, le=1)
    """Share of GPU memory the engine may use (vLLM's --gpu-memory-utilization)."""
    reserved_mib: int = Field(ge=0, le=MAX_MIB)
    """Per GPU: activations, CUDA graphs and the non-torch allocations outside the KV cache."""


class Source(_Strict):
    """Where numbers come from; a profile without sources is rejected."""

    fields: str = Field(min_length=1, max_length=MAX_TEXT)
    """Which fields this source backs."""
    citation: str = Field(min_length=1, max_length=MAX_TEXT)


class GpuProfile(_Strict):
    """Physics of one (GPU product, model, tensor parallel size); all per GPU unless stated."""

    schema_version: Literal[1]
    """An integer; ``true`` (equal to 1 in Python) is refused by ``_no_bool_version``."""
    name: str = Field(min_length=1, max_length=253)
    description: str = Field(default="", max_length=MAX_TEXT)
    gpu_product: str = Field(min_length=1, max_length=MAX_TEXT)
    """As in the node label nvidia.com/gpu.product, e.g. NVIDIA-H100-80GB-HBM3."""
    gpu_memory_mib: int = Field(gt=0, le=MAX_MIB)
    model: str = Field(min_length=1, max_length=MAX_TEXT)
    tensor_parallel_size: int = Field(ge=1, le=1024)
    sm_clocks: SmClocks
    memory_clock_mhz: int = Field(gt=0, le=MAX_CLOCK_MHZ)
    power_limit_watts: float = Field(gt=0, le=MAX_WATTS)
    idle_power_watts: float = Field(ge=0, le=MAX_WATTS)
    clock_settle_ms: float = Field(ge=0, le=MAX_MS)
    kv_bytes_per_token: int = Field(gt=0, le=2**40)
    """KV cache bytes of one token over all layers and all GPUs of the instance."""
    kv_capacity_tokens: int = Field(gt=0, le=MAX_TOKENS)
    """Tokens the KV cache of one instance holds."""
    kv_capacity_derivation: KvCapacityDerivation | None = None
    prefill: PrefillPhase
    decode: DecodePhase
    step_overhead: StepOverhead | None = None
    """None: no overhead (steps take the latency coefficients' time alone)."""
    source: tuple[Source, ...] = Field(min_length=1, max_length=1000)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _no_bool_version(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("schema_version must be the integer 1")
        return value

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
        """Ascending."""
        return self.sm_clocks.supported_mhz()

    @property
    def min_sm_clock_mhz(self) -> int:
        return self.supported_sm_clocks_mhz[0]

    @property
    def max_sm_clock_mhz(self) -> int:
        return self.supported_sm_clocks_mhz[-1]
