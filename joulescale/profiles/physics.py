"""Iteration latency, power and energy at an SM clock (docs/physics.md).

Pure functions on plain floats: the twin calls them millions of times, so no numpy here and
the profile's numbers are read from a table of derived constants (joulescale.profiles.derived).
Latency is ``t(f) = t(f_max) * (1 + s * (f_max / f_eff - 1))`` where ``f_eff`` is the requested
clock clamped to the supported range and lowered further by the board power cap (SwPowerCap).
Power is per GPU and depends on the clock and on the batch (sequences in the step), so every
caller passes the batch it runs; energy is summed over the tensor-parallel GPUs of the instance.
A step's latency is its kernels' time (``*_gpu_s``) plus the profile's step overhead, which no
clock changes (``step_overhead_s``); ``step_power_watts`` counts each part of a step at its power.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from joulescale.profiles.derived import Derived, derived
from joulescale.profiles.model import GpuProfile, Phase

_MS_PER_S = 1000.0


def _effective(d: Derived, cap_mhz: float, sm_clock_mhz: float) -> float:
    f = d.min_mhz if sm_clock_mhz < d.min_mhz else (d.max_mhz if sm_clock_mhz > d.max_mhz else sm_clock_mhz)
    return cap_mhz if f > cap_mhz else f


def effective_clock_mhz(profile: GpuProfile, phase: Phase, sm_clock_mhz: float,
                        batch_size: int | None = None) -> float:
    """The clock the GPU really runs: clamped to the supported range, then to the power cap,
    which a small batch (drawing less) may not reach. None: the batch that draws the most."""
    d = derived(profile)
    power = d.prefill_power if phase == "prefill" else d.decode_power
    return _effective(d, power.cap_mhz(batch_size), float(sm_clock_mhz))


def busy_power_watts(profile: GpuProfile, phase: Phase, sm_clock_mhz: float, batch_size: int) -> float:
    """Power of one GPU while it runs a step of ``batch_size`` sequences of ``phase``, after the
    power cap (a profile without batch coefficients draws the same at every batch)."""
    d = derived(profile)
    power = d.prefill_power if phase == "prefill" else d.decode_power
    f = _effective(d, power.cap_mhz(batch_size), sm_clock_mhz)
    floor = power.floor_watts
    watts = floor + (power.fmax_watts(batch_size) - floor) * math.pow(f / d.max_mhz, power.gamma)
    return d.power_limit_watts if watts > d.power_limit_watts else watts


def prompts_in_batch(batch_tokens: int, squared_tokens: float) -> int:
    """How many prompts a prefill batch of N tokens and S2 squared tokens holds, counted as equal
    prompts (N^2 / S2): the batch a policy that sees only N and S2 passes to ``busy_power_watts``."""
    if batch_tokens <= 0 or squared_tokens <= 0:
        return 1
    return max(1, round(batch_tokens * batch_tokens / squared_tokens))


def prefill_sensitivity(profile: GpuProfile, batch_tokens: int) -> float:
    compute, short, short_tokens = derived(profile).prefill_sensitivity
    return short if batch_tokens < short_tokens else compute


def decode_sensitivity(profile: GpuProfile, batch_size: int) -> float:
    base, span, half = derived(profile).decode_sensitivity
    return base + span * batch_size / (batch_size + half)


def step_overhead_s(profile: GpuProfile, sequences: int) -> float:
    """The step overhead (``profile.step_overhead``) of a step of ``sequences`` sequences: the
    same at every clock (host work, and GPU work bound by latency rather than the SM clock)."""
    fixed, per_sequence = derived(profile).overhead_ms
    return (fixed + per_sequence * sequences) / _MS_PER_S if sequences > 0 else 0.0


def overhead_idles(profile: GpuProfile) -> bool:
    """Does the GPU idle during part of the step overhead? If not, a P/D instance's step draws
    its phase's busy power throughout (``busy_power_watts``) and needs no ``step_power_watts``."""
    d = derived(profile)
    return d.overhead_busy_share < 1.0 and d.overhead_ms != (0.0, 0.0)


def prefill_gpu_s(
    profile: GpuProfile, batch_tokens: int, squared_tokens: float, sm_clock_mhz: float,
    batch_size: int | None = None, power_phase: Phase = "prefill",
) -> float:
    """The prefill kernels' time for N (tokens) and S2 (sum of squared prompt lengths), without
    the step overhead; the power cap is that of ``power_phase`` at ``batch_size`` sequences
    (None: the batch that draws the most)."""
    if batch_tokens <= 0:
        return 0.0
    d = derived(profile)
    base, per_token, per_squared = d.prefill_ms
    compute, short, short_tokens = d.prefill_sensitivity
    s = short if batch_tokens < short_tokens else compute
    power = d.prefill_power if power_phase == "prefill" else d.decode_power
    f = _effective(d, power.cap_mhz(batch_size), sm_clock_mhz)
    at_fmax_ms = base + per_token * batch_tokens + per_squared * squared_tokens
    return at_fmax_ms * (1.0 + s * (d.max_mhz / f - 1.0)) / _MS_PER_S


def prefill_latency_from_sums_s(
    profile: GpuProfile, batch_tokens: int, squared_tokens: float, sm_clock_mhz: float,
    batch_size: int | None = None, power_phase: Phase = "prefill",
) -> float:
    """A prefill step's latency from N and S2: its kernels (``prefill_gpu_s``) and the step
    overhead of its ``batch_size`` prompts (None: ``prompts_in_batch``)."""
    if batch_tokens <= 0:
        return 0.0
    prompts = prompts_in_batch(batch_tokens, squared_tokens) if batch_size is None else batch_size
    return (prefill_gpu_s(profile, batch_tokens, squared_tokens, sm_clock_mhz, batch_size, power_phase)
            + step_overhead_s(profile, prompts))


def prefill_latency_s(profile: GpuProfile, prompt_lengths: Sequence[int], sm_clock_mhz: float) -> float:
    """Latency of one prefill iteration over prompts (or prompt chunks) of these lengths."""
    tokens = 0
    squared = 0
    for length in prompt_lengths:
        tokens += length
        squared += length * length
    return prefill_latency_from_sums_s(profile, tokens, squared, sm_clock_mhz, len(prompt_lengths))


def decode_gpu_s(profile: GpuProfile, batch_size: int, context_tokens: int, sm_clock_mhz: float) -> float:
    """The decode kernels' time for ``batch_size`` sequences over ``context_tokens`` in all,
    without the step overhead."""
    if batch_size <= 0:
        return 0.0
    d = derived(profile)
    base, per_sequence, per_context = d.decode_ms
    s_base, s_span, s_half = d.decode_sensitivity
    s = s_base + s_span * batch_size / (batch_size + s_half)
    f = _effective(d, d.decode_power.cap_mhz(batch_size), sm_clock_mhz)
    at_fmax_ms = base + per_sequence * batch_size + per_context * context_tokens
    return at_fmax_ms * (1.0 + s * (d.max_mhz / f - 1.0)) / _MS_PER_S


def decode_latency_s(profile: GpuProfile, batch_size: int, context_tokens: int, sm_clock_mhz: float) -> float:
    """Latency of one decode step of ``batch_size`` sequences over ``context_tokens`` in all: its
    kernels and the step overhead."""
    if batch_size <= 0:
        return 0.0
    return decode_gpu_s(profile, batch_size, context_tokens, sm_clock_mhz) + step_overhead_s(profile, batch_size)


def iteration_energy_j(profile: GpuProfile, phase: Phase, latency_s: float, sm_clock_mhz: float,
                       batch_size: int) -> float:
    """Energy of one iteration of ``latency_s`` over all tensor-parallel GPUs of the instance, all
    of it at busy power (its overhead too: exact when the overhead's ``gpu_busy_share`` is 1)."""
    return (derived(profile).tensor_parallel_size * busy_power_watts(profile, phase, sm_clock_mhz, batch_size)
            * latency_s)


def idle_energy_j(profile: GpuProfile, duration_s: float) -> float:
    """Energy of the instance's GPUs idling (no batch) for ``duration_s``."""
    d = derived(profile)
    return d.tensor_parallel_size * d.idle_power_watts * duration_s


def mixed_step_times_s(profile: GpuProfile, batch_size: int, context_tokens: int, chunk_tokens: int,
                       chunk_squared_tokens: float, sm_clock_mhz: float,
                       chunk_prompts: int | None = None) -> tuple[float, float, float]:
    """(decode kernels, prefill kernels, step overhead) of one aggregated (vLLM V1) step, whose
    latency is their sum.

    A step that runs ``batch_size`` decodes over ``context_tokens`` and prefill chunks of
    ``chunk_tokens`` (``chunk_squared_tokens``: their S2, ``joulescale.engines.model.prefill``)
    costs a decode step, which pays the step's fixed cost (reading the weights, launching the
    kernels), plus the chunks' marginal prefill cost: the token and attention terms of the
    prefill formula without its base, at the prefill's clock sensitivity. A step with no
    decode is a plain prefill step (base included); one with no chunk is a plain decode step.
    The overhead counts every sequence of the step, decodes and prompts with a chunk.
    """
    prompts = (chunk_prompts if chunk_prompts is not None
               else prompts_in_batch(chunk_tokens, chunk_squared_tokens)) if chunk_tokens > 0 else 0
    overhead_s = step_overhead_s(profile, batch_size + prompts)
    if batch_size <= 0:
        return 0.0, prefill_gpu_s(profile, chunk_tokens, chunk_squared_tokens, sm_clock_mhz, chunk_prompts), overhead_s
    decode_s = decode_gpu_s(profile, batch_size, context_tokens, sm_clock_mhz)
    if chunk_tokens <= 0:
        return decode_s, 0.0, overhead_s
    d = derived(profile)
    _, per_token, per_squared = d.prefill_ms
    compute, short, short_tokens = d.prefill_sensitivity
    s = short if chunk_tokens < short_tokens else compute
    f = _effective(d, d.prefill_power.cap_mhz(chunk_prompts), sm_clock_mhz)
    marginal_ms = per_token * chunk_tokens + per_squared * chunk_squared_tokens
    return decode_s, marginal_ms * (1.0 + s * (d.max_mhz / f - 1.0)) / _MS_PER_S, overhead_s


def mixed_step_parts_s(profile: GpuProfile, batch_size: int, context_tokens: int, chunk_tokens: int,
                       chunk_squared_tokens: float, sm_clock_mhz: float,
                       chunk_prompts: int | None = None) -> tuple[float, float]:
    """The decode and prefill parts of one aggregated step (``mixed_step_times_s``), whose sum is
    its latency: the overhead is in the decode part, or in the prefill part of a step without decodes."""
    decode_s, prefill_s, overhead_s = mixed_step_times_s(profile, batch_size, context_tokens, chunk_tokens,
                                                         chunk_squared_tokens, sm_clock_mhz, chunk_prompts)
    if batch_size > 0:
        return decode_s + overhead_s, prefill_s
    return 0.0, prefill_s + overhead_s


def step_power_watts(profile: GpuProfile, decode_s: float, prefill_s: float, overhead_s: float,
                     sm_clock_mhz: float, batch_size: int, chunk_prompts: int) -> float:
    """Power of one GPU over a step of these parts (``mixed_step_times_s``): the decode kernels
    at the decode power of ``batch_size`` decodes, the prefill kernels at the prefill power of
    ``chunk_prompts`` prompts, and the overhead's busy share at the step's own phase (decode when
    it has decodes), the rest at idle power. Each part is counted once, weighted by its time."""
    d = derived(profile)
    phase: Phase = "decode" if batch_size > 0 else "prefill"
    own_watts = busy_power_watts(profile, phase, sm_clock_mhz, batch_size if batch_size > 0 else max(chunk_prompts, 1))
    if prefill_s <= 0.0 or decode_s <= 0.0:
        kernels_s, kernels_j = decode_s + prefill_s, (decode_s + prefill_s) * own_watts
    else:
        kernels_s = decode_s + prefill_s
        kernels_j = decode_s * own_watts + prefill_s * busy_power_watts(profile, "prefill", sm_clock_mhz,
                                                                         max(chunk_prompts, 1))
    share = d.overhead_busy_share
    total_s = kernels_s + overhead_s
    if total_s <= 0.0:
        return own_watts
    overhead_j = overhead_s * (share * own_watts + (1.0 - share) * d.idle_power_watts)
    return (kernels_j + overhead_j) / total_s
