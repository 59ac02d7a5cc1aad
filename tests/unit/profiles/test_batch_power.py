"""Busy power that rises with the batch: the profile's curve is the fit of ML.ENERGY's data (through
the twin's step accounting), a profile without the curve keeps constant power, and a file's
coefficients replace the shipped ones."""

from __future__ import annotations

from importlib import resources

import pytest

from bench.mlenergy_calibration import PUBLISHED, decode_power_points, fit
from joulescale.profiles import load_profile
from joulescale.profiles import physics as ph
from joulescale.profiles.loader import ProfileError, parse_profile

TP4 = load_profile("h100-sxm-llama-70b-tp4")
F_MAX = TP4.max_sm_clock_mhz
DIGITISATION = 0.02
"""How closely the published chart values were read (the source states about +-2 %)."""


def test_the_shipped_curve_is_the_least_squares_fit_of_the_published_watts() -> None:
    points = decode_power_points(TP4, TP4.step_overhead)
    curve = fit(points)
    power = TP4.decode.power
    assert power.batch is not None
    # The profile states the fit rounded to the digits written in the file.
    assert power.fmax_watts == pytest.approx(curve.top_watts, abs=0.5)
    assert power.batch.low_watts == pytest.approx(curve.low_watts, abs=0.5)
    assert power.batch.midpoint_log2 == pytest.approx(curve.midpoint_log2, abs=0.005)
    assert power.batch.steepness == pytest.approx(curve.steepness, abs=0.0005)
    # The logistic is monotonic; the published watts are digitised to about +-2 % and dip from 16 to
    # 32 sequences (451 -> 449 W). So the residuals may reach two digitisation errors at a single
    # size (neighbours read at opposite extremes), and stay within one on average.
    residuals = [ph.busy_power_watts(TP4, "decode", F_MAX, p.max_num_seqs) / points[p.max_num_seqs] - 1
                 for p in PUBLISHED]
    assert max(abs(r) for r in residuals) <= 2 * DIGITISATION
    assert (sum(r * r for r in residuals) / len(residuals)) ** 0.5 <= DIGITISATION


def test_the_decode_power_lies_below_the_published_whole_step_power() -> None:
    """The published W averages whole steps, prefill chunks (near the board limit) included; the
    decode part alone draws less at every size, so counting the chunks' power on top of a curve
    fitted to whole steps would count it twice."""
    for size, watts in decode_power_points(TP4, TP4.step_overhead).items():
        published = next(p for p in PUBLISHED if p.max_num_seqs == size)
        assert watts < published.watts_per_gpu


def test_power_rises_with_the_batch_at_every_clock_and_stays_between_low_and_top() -> None:
    power = TP4.decode.power
    assert power.batch is not None
    for clock in (F_MAX, 1200, TP4.min_sm_clock_mhz):
        watts = [ph.busy_power_watts(TP4, "decode", clock, b) for b in (1, 2, 8, 32, 128, 512, 4096)]
        assert watts == sorted(watts)
        assert watts[0] < watts[-1]
    assert ph.busy_power_watts(TP4, "decode", F_MAX, 1) >= power.batch.low_watts
    assert ph.busy_power_watts(TP4, "decode", F_MAX, 1 << 30) == pytest.approx(power.fmax_watts, rel=1e-6)


def test_a_profile_without_a_batch_curve_draws_the_same_at_every_batch() -> None:
    tp8 = load_profile("h100-sxm-llama-70b-tp8")
    assert tp8.decode.power.batch is None
    expected = tp8.decode.power.fmax_watts
    assert {ph.busy_power_watts(tp8, "decode", tp8.max_sm_clock_mhz, b) for b in (1, 64, 4096)} == {expected}


def _with_decode_power(power_yaml: str) -> str:
    """The shipped TP4 file with its decode power block replaced, as a measured file would be."""
    lines = resources.files("joulescale.profiles").joinpath("data", "h100-sxm-llama-70b-tp4.yaml").read_text(
        encoding="utf-8").split("\n")
    start = lines.index("  power:", lines.index("decode:"))
    end = start + 1
    while lines[end].startswith("    "):
        end += 1
    return "\n".join([*lines[:start], power_yaml, *lines[end:]])


def test_a_measured_profile_replaces_the_coefficients_without_code_changes() -> None:
    measured = parse_profile(_with_decode_power(
        "  power: {floor_watts: 150, fmax_watts: 500, gamma: 1.2, "
        "batch: {low_watts: 200, midpoint_log2: 4.0, steepness: 2.0}}"))
    assert ph.busy_power_watts(measured, "decode", F_MAX, 16) == pytest.approx(350.0)  # the midpoint
    assert ph.busy_power_watts(measured, "decode", F_MAX, 1) == pytest.approx(200 + 300 / (1 + 2.718281828459045 ** 8))
    constant = parse_profile(_with_decode_power("  power: {floor_watts: 150, fmax_watts: 500, gamma: 1.2}"))
    assert ph.busy_power_watts(constant, "decode", F_MAX, 1) == ph.busy_power_watts(constant, "decode", F_MAX, 999)


@pytest.mark.parametrize("low", [100, 700])
def test_a_curve_whose_bottom_lies_outside_floor_and_top_is_refused(low: int) -> None:
    with pytest.raises(ProfileError, match="low_watts"):
        parse_profile(_with_decode_power(
            f"  power: {{floor_watts: 150, fmax_watts: 500, gamma: 1.2, "
            f"batch: {{low_watts: {low}, midpoint_log2: 4.0, steepness: 2.0}}}}"))


def test_the_power_cap_binds_for_large_batches_only() -> None:
    capped = TP4.model_copy(update={"power_limit_watts": 500.0})
    assert ph.effective_clock_mhz(capped, "decode", F_MAX, 16) == F_MAX  # 436 W fits under 500 W
    assert ph.effective_clock_mhz(capped, "decode", F_MAX, 256) < F_MAX  # 568 W does not
    assert ph.busy_power_watts(capped, "decode", F_MAX, 256) == pytest.approx(500.0)
    slowed = ph.decode_latency_s(capped, 256, 256 * 1000, F_MAX) / ph.decode_latency_s(TP4, 256, 256 * 1000, F_MAX)
    assert slowed > 1.0
    assert ph.decode_latency_s(capped, 16, 16_000, F_MAX) == ph.decode_latency_s(TP4, 16, 16_000, F_MAX)
