"""status.energy from one window of metrics (pure).

Power and J/token are measured: the agents' GPU energy counters over the window, per role,
over the output tokens the decode engines generated. SLO attainment comes from the engines'
histograms, interpolated inside the bucket that holds the target as PromQL's
histogram_fraction does (``joulescale.engines.bucket_estimates``), so it matches the dashboard. The saving against static
maximum clocks is an estimate, since that run did not happen: each role's measured energy is
rescaled by its profile's energy per iteration at the maximum SM clock over that at the role's
average SM clock in the window (``joulescale.profiles.physics``; a representative iteration:
one prompt of the mean length for prefill, a batch of DECODE_BATCH at the mean context for decode).
"""

from __future__ import annotations

from typing import Any

from joulescale.api import EnergyAwareLLMServiceSpec
from joulescale.engines.observation import Phase
from joulescale.profiles import GpuProfile, ProfileCatalog
from joulescale.profiles.physics import decode_latency_s, iteration_energy_j, prefill_latency_s
from joulescale_operator.planloop.histogram import WindowHistogram
from joulescale_operator.planloop.observation import ROLES, ServiceObservation

DECODE_BATCH = 16
"""The decode batch of the saving estimate's representative iteration."""
FALLBACK_PROMPT_TOKENS = 1024
FALLBACK_OUTPUT_TOKENS = 256


def energy_status(
    observation: ServiceObservation, spec: EnergyAwareLLMServiceSpec, profiles: ProfileCatalog, observed_at: str
) -> dict[str, Any]:
    window = observation.window_s
    tokens = observation.output_tokens
    status: dict[str, Any] = {"windowSeconds": round(window), "observedAt": observed_at}
    total_j = 0.0
    total_w = 0.0
    for role in ROLES:
        joules = observation.energy_j.get(role)
        if joules is None:
            continue
        total_j += joules
        # Over the time the counters cover: a role that started within the window has counted
        # energy over part of it only, and dividing by the whole window would understate power.
        watts = joules / observation.energy_span_s.get(role, window)
        total_w += watts
        phase: dict[str, Any] = {"averagePowerWatts": round(watts, 1)}
        if tokens > 0:
            phase["joulesPerOutputToken"] = round(joules / tokens, 4)
        status[role] = phase
    if observation.energy_j:
        status["averagePowerWatts"] = round(total_w, 1)
        if tokens > 0:
            status["joulesPerOutputToken"] = round(total_j / tokens, 4)
    attainment = slo_attainment(observation, spec)
    if attainment is not None:
        status["sloAttainment"] = round(attainment, 4)
        status["sloAttainmentPercent"] = f"{attainment * 100:.1f}"
    saving = estimated_saving_percent(observation, spec, profiles)
    if saving is not None:
        status["estimatedSavingPercent"] = round(saving, 1)
    return status


def slo_attainment(observation: ServiceObservation, spec: EnergyAwareLLMServiceSpec) -> float | None:
    """The lower of: first tokens within the TTFT objective, token gaps within the TPOT objective."""
    shares = [
        share
        for histogram, limit_ms in ((observation.ttft, spec.slo.ttft_ms), (observation.inter_token, spec.slo.tpot_ms))
        if histogram is not None and (share := histogram.fraction_within(limit_ms / 1000.0)) is not None
    ]
    return min(shares) if shares else None


def slo_at_risk(observation: ServiceObservation, spec: EnergyAwareLLMServiceSpec) -> frozenset[Phase]:
    """The roles whose buckets show a miss: TTFT (prefill) or TPOT (decode) at the SLO percentile
    over its objective for sure (``bucket_estimates.at_risk``; a target inside a bucket is left to
    the planner's capacity model)."""
    percentile = spec.slo.percentile / 100.0
    checks: tuple[tuple[Phase, WindowHistogram | None, int], ...] = (
        ("prefill", observation.ttft, spec.slo.ttft_ms), ("decode", observation.inter_token, spec.slo.tpot_ms),
    )
    return frozenset(
        role for role, histogram, limit_ms in checks
        if histogram is not None and histogram.at_risk(percentile, limit_ms / 1000.0)
    )


def estimated_saving_percent(
    observation: ServiceObservation, spec: EnergyAwareLLMServiceSpec, profiles: ProfileCatalog
) -> float | None:
    """None unless every role with energy has a profile and an observed clock."""
    measured = at_max = 0.0
    prompt = observation.mean_prompt_tokens() or FALLBACK_PROMPT_TOKENS
    output = observation.mean_output_tokens() or FALLBACK_OUTPUT_TOKENS
    for role, joules in observation.energy_j.items():
        profile = _profile(spec, role, profiles)
        clock = observation.sm_clock_mhz.get(role)
        if profile is None or clock is None or clock <= 0:
            return None
        ratio = _iteration_energy(profile, role, profile.max_sm_clock_mhz, prompt, output) / _iteration_energy(
            profile, role, clock, prompt, output
        )
        measured += joules
        at_max += joules * ratio
    if at_max <= 0:
        return None
    return 100.0 * (1.0 - measured / at_max)


def _profile(spec: EnergyAwareLLMServiceSpec, role: str, profiles: ProfileCatalog) -> GpuProfile | None:
    role_spec = spec.prefill if role == "prefill" else spec.decode
    for product in role_spec.gpu.products:
        found = profiles.match(product, spec.model.name, role_spec.tensor_parallel_size)
        if found is not None:
            return found
    return None


def _iteration_energy(profile: GpuProfile, role: str, clock_mhz: float, prompt: float, output: float) -> float:
    if role == "prefill":
        latency = prefill_latency_s(profile, [round(prompt)], clock_mhz)
        return iteration_energy_j(profile, "prefill", latency, clock_mhz, 1)
    context = round(DECODE_BATCH * (prompt + output / 2))
    latency = decode_latency_s(profile, DECODE_BATCH, context, clock_mhz)
    return iteration_energy_j(profile, "decode", latency, clock_mhz, DECODE_BATCH)
