"""The profile physics (docs/physics.md): latency, power cap, energy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from joulescale.profiles import load_profile
from joulescale.profiles import physics as ph

TP8 = load_profile("h100-sxm-llama-70b-tp8")
TP4 = load_profile("h100-sxm-llama-70b-tp4")
F_MAX = TP8.max_sm_clock_mhz


def test_prefill_at_fmax_is_the_profile_polynomial() -> None:
    lat = TP8.prefill.latency
    expected_ms = lat.base_ms + lat.per_token_ms * 3000 + lat.per_token_squared_ms * (1000**2 + 2000**2)
    overhead = TP8.step_overhead
    assert overhead is not None
    overhead_ms = overhead.fixed_ms + overhead.per_sequence_ms * 2  # two prompts in the step
    assert ph.prefill_latency_s(TP8, [1000, 2000], F_MAX) == pytest.approx((expected_ms + overhead_ms) / 1000)


def test_prefill_at_half_clock_stretches_by_the_compute_share() -> None:
    s = TP8.prefill.clock_sensitivity.compute
    # The kernels stretch; the step overhead does not (tests/unit/profiles/test_step_overhead.py).
    ratio = ph.prefill_gpu_s(TP8, 4096, 4096**2, F_MAX / 2) / ph.prefill_gpu_s(TP8, 4096, 4096**2, F_MAX)
    assert ratio == pytest.approx(1 + s)


def test_short_prefill_batches_are_less_clock_sensitive() -> None:
    def stretch(tokens: int) -> float:
        return ph.prefill_latency_s(TP8, [tokens], F_MAX / 2) / ph.prefill_latency_s(TP8, [tokens], F_MAX)

    assert stretch(64) < stretch(4096)


def test_decode_sensitivity_grows_with_batch_size() -> None:
    def stretch(batch: int) -> float:
        return ph.decode_gpu_s(TP8, batch, batch * 500, 990) / ph.decode_gpu_s(TP8, batch, batch * 500, F_MAX)

    assert stretch(1) < stretch(64) < stretch(256)
    assert stretch(256) == pytest.approx(1 + (0.05 + 0.55 * 0.5) * (F_MAX / 990 - 1))


def test_decode_at_fmax_is_the_profile_linear_model() -> None:
    lat = TP4.decode.latency
    expected_ms = lat.base_ms + lat.per_sequence_ms * 32 + lat.per_context_token_ms * 40_000
    overhead = TP4.step_overhead
    assert overhead is not None
    overhead_ms = overhead.fixed_ms + overhead.per_sequence_ms * 32
    assert ph.decode_latency_s(TP4, 32, 40_000, F_MAX) == pytest.approx((expected_ms + overhead_ms) / 1000)


def test_empty_batches_take_no_time() -> None:
    assert ph.prefill_latency_s(TP8, [], F_MAX) == 0.0
    assert ph.decode_latency_s(TP8, 0, 0, F_MAX) == 0.0


def test_clocks_outside_the_device_range_are_clamped() -> None:
    assert ph.effective_clock_mhz(TP8, "decode", 5000) == F_MAX
    assert ph.effective_clock_mhz(TP8, "decode", 1) == TP8.min_sm_clock_mhz


def test_a_70_percent_power_cap_slows_prefill_about_1_3x_and_not_decode() -> None:
    """Splitwise's measurement that the shipped coefficients reproduce (docs/physics.md, "Power and the power cap")."""
    capped = TP8.model_copy(update={"power_limit_watts": 0.7 * TP8.power_limit_watts})
    prefill = ph.prefill_latency_s(capped, [2048], F_MAX) / ph.prefill_latency_s(TP8, [2048], F_MAX)
    decode = ph.decode_latency_s(capped, 64, 64_000, F_MAX) / ph.decode_latency_s(TP8, 64, 64_000, F_MAX)
    assert prefill == pytest.approx(1.30, abs=0.04)
    assert decode == 1.0
    assert ph.busy_power_watts(capped, "prefill", F_MAX, 1) == pytest.approx(capped.power_limit_watts)


def test_power_below_the_cap_follows_the_gamma_curve() -> None:
    power = TP8.decode.power
    expected = power.floor_watts + (power.fmax_watts - power.floor_watts) * 0.5**power.gamma
    assert ph.busy_power_watts(TP8, "decode", F_MAX / 2, 64) == pytest.approx(expected)


def test_iteration_energy_sums_over_the_tensor_parallel_gpus() -> None:
    latency_s = ph.decode_latency_s(TP8, 8, 8000, 1200)
    per_gpu_j = ph.busy_power_watts(TP8, "decode", 1200, 64) * latency_s
    assert ph.iteration_energy_j(TP8, "decode", latency_s, 1200, 64) == pytest.approx(8 * per_gpu_j)
    assert ph.idle_energy_j(TP8, 2.0) == pytest.approx(8 * TP8.idle_power_watts * 2.0)


def _energy_per_token_j(phase: str, clock_mhz: int) -> float:
    if phase == "prefill":
        latency_s = ph.prefill_latency_s(TP8, [2048], clock_mhz)
        return ph.iteration_energy_j(TP8, "prefill", latency_s, clock_mhz, 1) / 2048
    latency_s = ph.decode_latency_s(TP8, 64, 64 * 1000, clock_mhz)
    return ph.iteration_energy_j(TP8, "decode", latency_s, clock_mhz, 64) / 64


def test_energy_per_token_is_u_shaped_with_the_documented_sweet_spots() -> None:
    clocks = TP8.supported_sm_clocks_mhz
    prefill_best = min(clocks, key=lambda f: _energy_per_token_j("prefill", f))
    decode_best = min(clocks, key=lambda f: _energy_per_token_j("decode", f))
    assert 0.6 * F_MAX <= prefill_best <= 0.8 * F_MAX
    # Memory bound: far below f_max. The step overhead, which no clock shortens, lowers it further
    # (690 MHz at B = 64; 700-1000 MHz for the kernels alone).
    assert 600 <= decode_best <= 1000
    for phase, best in (("prefill", prefill_best), ("decode", decode_best)):
        assert _energy_per_token_j(phase, clocks[0]) > _energy_per_token_j(phase, best)
        assert _energy_per_token_j(phase, F_MAX) > _energy_per_token_j(phase, best)


@given(
    batch=st.integers(1, 512),
    context=st.integers(0, 400_000),
    low=st.integers(345, 1980),
    high=st.integers(345, 1980),
)
def test_decode_is_never_faster_at_a_lower_clock(batch: int, context: int, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    assert ph.decode_latency_s(TP4, batch, context, low) >= ph.decode_latency_s(TP4, batch, context, high)


@given(prompts=st.lists(st.integers(1, 16_384), min_size=1, max_size=64), clock=st.integers(345, 1980))
def test_prefill_from_sums_equals_prefill_from_lengths(prompts: list[int], clock: int) -> None:
    squared = sum(p * p for p in prompts)
    assert ph.prefill_latency_from_sums_s(TP4, sum(prompts), squared, clock, len(prompts)) == pytest.approx(
        ph.prefill_latency_s(TP4, prompts, clock)
    )
