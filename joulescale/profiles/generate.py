"""A profile whose latency comes from a performance database and whose power from a measurement.

The profile's latency at f_max is linear in its coefficients (joulescale.profiles.physics):

    prefill  t = base + per_token * N + per_token_squared * S2   (N tokens, S2 sum of squares)
    decode   t = base + per_sequence * B + per_context_token * K  (B sequences, K context tokens)

so the fit is a non-negative least squares over a grid of batches and lengths, each row divided
by the database's time (it minimises relative, not absolute, error: a 40 ms prefill matters as
much as a 4 s one). The database's kernels ran at the GPU's default clock under its board power
limit, which is what the profile calls "asking for f_max": where the profile's power model puts
the power-cap clock below f_max (an H200 prefill), t(f_max) is the database's time divided by
the physics' slowdown at that clock. The error is then measured through the physics functions on
the written profile itself (rounded coefficients included), so the reported error is the twin's.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from joulescale.profiles import physics
from joulescale.profiles.architecture import Architecture
from joulescale.profiles.hardware import Hardware
from joulescale.profiles.memory import derive_kv_capacity_tokens
from joulescale.profiles.model import (
    DecodeLatency,
    DecodePhase,
    GpuProfile,
    KvCapacityDerivation,
    PrefillLatency,
    PrefillPhase,
    Source,
)
from joulescale.profiles.perfdb import LatencyDatabase

PREFILL_GRID: tuple[tuple[int, int], ...] = (
    *((1, n) for n in (128, 256, 512, 1024, 2048, 4096, 8192, 16384)),
    *((b, n) for b in (2, 4) for n in (256, 1024, 4096)),
    (8, 512), (8, 2048),
)
"""(prompts, tokens each) of one prefill batch: single prompts up to 16k, and mixed batches."""
DECODE_GRID: tuple[tuple[int, int], ...] = tuple(
    (b, k) for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) for k in (512, 2048, 8192)
)
"""(sequences, context tokens each) of one decode step; points that do not fit in memory drop out."""

GPU_MEMORY_UTILIZATION = 0.9
RESERVED_MIB = 4096
SIGNIFICANT_DIGITS = 4


@dataclass(frozen=True)
class PhaseFit:
    """Relative errors |profile - database| / database over the grid points that fit."""

    points: int
    median_error: float
    max_error: float

    def text(self) -> str:
        return f"median {self.median_error:.1%}, max {self.max_error:.1%} over {self.points} points"


@dataclass(frozen=True)
class Generated:
    profile: GpuProfile
    prefill: PhaseFit
    decode: PhaseFit


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def fit_nonnegative(rows: Sequence[Sequence[float]], targets: Sequence[float]) -> tuple[float, ...]:
    """Coefficients >= 0 minimising the relative error of ``rows @ x`` against ``targets``."""
    import numpy as np
    from scipy.optimize import nnls

    a = np.array(rows, dtype=float)
    y = np.array(targets, dtype=float)
    scale = a.max(axis=0)  # columns of ~1 keep the solver well conditioned (S2 reaches 1e8)
    scale[scale == 0] = 1.0
    solution, _ = nnls((a / scale) / y[:, None], np.ones_like(y))
    return tuple(float(v) for v in solution / scale)


def _measure(database: LatencyDatabase, phase: str) -> list[tuple[int, int, float]]:
    grid = PREFILL_GRID if phase == "prefill" else DECODE_GRID
    ask = database.prefill_ms if phase == "prefill" else database.decode_ms
    points = [(b, n, ask(b, n)) for b, n in grid]
    kept = [(b, n, ms) for b, n, ms in points if ms is not None and ms > 0]
    if len(kept) < 4:
        raise ValueError(f"the database estimates only {len(kept)} {phase} grid points: too few to fit")
    return kept


def profile_ms(profile: GpuProfile, phase: str, batch: int, tokens: int) -> float:
    """The profile's own kernel time at f_max for a grid point, in ms (through the physics; without
    the step overhead, which a kernel database does not time)."""
    f_max = profile.max_sm_clock_mhz
    if phase == "prefill":
        return 1000.0 * physics.prefill_gpu_s(profile, batch * tokens, batch * tokens * tokens, f_max, batch)
    return 1000.0 * physics.decode_gpu_s(profile, batch, batch * (tokens + 1), f_max)


def _slowdown(profile: GpuProfile, phase: str, batch: int, tokens: int) -> float:
    """t(asked f_max) / t(f_max): above 1 where the power cap lowers the clock the GPU runs."""
    f_max = profile.max_sm_clock_mhz
    if phase == "prefill":
        s = physics.prefill_sensitivity(profile, batch * tokens)
        f = physics.effective_clock_mhz(profile, "prefill", f_max)
    else:
        s = physics.decode_sensitivity(profile, batch)
        f = physics.effective_clock_mhz(profile, "decode", f_max)
    return 1.0 + s * (f_max / f - 1.0)


def _errors(profile: GpuProfile, phase: str, points: list[tuple[int, int, float]]) -> PhaseFit:
    errors = [abs(profile_ms(profile, phase, b, n) - ms) / ms for b, n, ms in points]
    return PhaseFit(len(errors), statistics.median(errors), max(errors))


def generate(
    database: LatencyDatabase, architecture: Architecture, hardware: Hardware, *, name: str, model_name: str,
    tensor_parallel_size: int, command: str,
) -> Generated:
    """Fit the latency, derive the KV fields, take the rest from ``hardware``."""
    prefill_points = _measure(database, "prefill")
    decode_points = _measure(database, "decode")
    derivation = KvCapacityDerivation(weight_bytes=architecture.weight_bytes,
                                      gpu_memory_utilization=GPU_MEMORY_UTILIZATION, reserved_mib=RESERVED_MIB)
    kv_tokens = derive_kv_capacity_tokens(hardware.gpu_memory_mib, tensor_parallel_size,
                                          architecture.kv_bytes_per_token, derivation)
    if kv_tokens <= 0:
        raise ValueError(f"{model_name} does not fit in {tensor_parallel_size} x {hardware.gpu_memory_mib} MiB")

    def build(prefill: Sequence[float], decode: Sequence[float], latency_citation: str) -> GpuProfile:
        return GpuProfile(
            schema_version=1, name=name,
            description=(f"{model_name} (BF16) on {tensor_parallel_size}x {hardware.gpu_product}, tensor parallel "
                         f"{tensor_parallel_size}. Latency fitted to {database.label}; clocks and power from "
                         f"{hardware.origin or 'a hardware file'}. Generated by: {command}"),
            gpu_product=hardware.gpu_product, gpu_memory_mib=hardware.gpu_memory_mib, model=model_name,
            tensor_parallel_size=tensor_parallel_size, sm_clocks=hardware.sm_clocks,
            memory_clock_mhz=hardware.memory_clock_mhz, power_limit_watts=hardware.power_limit_watts,
            idle_power_watts=hardware.idle_power_watts, clock_settle_ms=hardware.clock_settle_ms,
            kv_bytes_per_token=architecture.kv_bytes_per_token, kv_capacity_tokens=kv_tokens,
            kv_capacity_derivation=derivation,
            prefill=PrefillPhase(
                latency=PrefillLatency(base_ms=_round(prefill[0]), per_token_ms=_round(prefill[1]),
                                       per_token_squared_ms=_round(prefill[2])),
                clock_sensitivity=hardware.prefill.clock_sensitivity, power=hardware.prefill.power),
            decode=DecodePhase(
                latency=DecodeLatency(base_ms=_round(decode[0]), per_sequence_ms=_round(decode[1]),
                                      per_context_token_ms=_round(decode[2])),
                clock_sensitivity=hardware.decode.clock_sensitivity, power=hardware.decode.power),
            step_overhead=hardware.step_overhead,
            source=(
                Source(fields="prefill.latency, decode.latency", citation=latency_citation),
                Source(fields="kv_bytes_per_token, kv_capacity_derivation.weight_bytes",
                       citation=(f"the model's config.json ({architecture.layers} layers, {architecture.kv_heads} KV "
                                 f"heads, head dim {architecture.head_dim}, hidden {architecture.hidden_size}, "
                                 f"intermediate {architecture.intermediate_size}, vocabulary "
                                 f"{architecture.vocab_size}: {architecture.parameters:,} parameters, "
                                 f"{architecture.bytes_per_value} bytes each).")),
                Source(fields="kv_capacity_tokens, kv_capacity_derivation",
                       citation=(f"derived as in docs/profiles.md (KV capacity): engine memory share "
                                 f"{GPU_MEMORY_UTILIZATION} (vLLM's default), {RESERVED_MIB} MiB reserved per GPU "
                                 "(assumption).")),
                *hardware.source,
            ),
        )

    grid = (f"fitted at f_max by non-negative least squares on relative error over {len(prefill_points)} "
            f"prefill points (batch 1-8, 128-16384 tokens each) and {len(decode_points)} decode points "
            f"(batch 1-256, context 512-8192 tokens each)")
    unit = build((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), "-")
    prefill = fit_nonnegative([(1.0, b * n, b * n * n) for b, n, _ in prefill_points],
                              [ms / _slowdown(unit, "prefill", b, n) for b, n, ms in prefill_points])
    decode = fit_nonnegative([(1.0, b, b * (n + 1)) for b, n, _ in decode_points],
                             [ms / _slowdown(unit, "decode", b, n) for b, n, ms in decode_points])
    draft = build(prefill, decode, "-")
    prefill_fit, decode_fit = _errors(draft, "prefill", prefill_points), _errors(draft, "decode", decode_points)
    citation = (f"{database.label}; {grid}. Fit error: prefill {prefill_fit.text()}; decode {decode_fit.text()}. "
                f"Command: {command}")
    profile = build(prefill, decode, citation)
    return Generated(profile, prefill_fit, decode_fit)


def to_yaml(generated: Generated) -> str:
    """The profile as a YAML document that the strict loader reads back unchanged."""
    import yaml

    document = generated.profile.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    header = ("# Generated by `joulescale profile generate` (docs/profiles.md); regenerate rather than edit.\n"
              f"# Fit error at f_max: prefill {generated.prefill.text()}; decode {generated.decode.text()}.\n")
    return header + yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=False)
