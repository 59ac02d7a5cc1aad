"""Offline (profile, fitted) predictors and the online correction."""

from __future__ import annotations

import random

import pytest

from joulescale.control import (
    CorrectionSettings,
    FitError,
    LatencySample,
    OnlineCorrection,
    ProfilePredictor,
    decode_bucket,
    fit_predictor,
)
from joulescale.profiles import load_profile
from joulescale.profiles import physics as ph

PROFILE = load_profile("h100-sxm-llama-70b-tp4")
PROFILED_CLOCKS = (990, 1290, 1590, 1980)


def _samples(outlier_share: float = 0.0, seed: int = 7) -> list[LatencySample]:
    rng = random.Random(seed)
    samples = []
    for clock in PROFILED_CLOCKS:
        for tokens in (128, 256, 512, 1024, 2048, 4096, 8192):
            for _ in range(3):
                latency = ph.prefill_latency_s(PROFILE, [tokens], clock) * rng.uniform(0.99, 1.01)
                if rng.random() < outlier_share:
                    latency *= 3
                samples.append(
                    LatencySample("prefill", clock, latency, batch_tokens=tokens, squared_tokens=tokens**2)
                )
        for batch in (*range(1, 129, 3), 200, 250, 256, 300, 380, 500):
            for per_request in (200, 1000, 3000):
                context = batch * per_request
                latency = ph.decode_latency_s(PROFILE, batch, context, clock) * rng.uniform(0.99, 1.01)
                if rng.random() < outlier_share:
                    latency *= 3
                samples.append(
                    LatencySample("decode", clock, latency, batch_size=batch, context_tokens=context)
                )
    return samples


def test_the_profile_predictor_is_the_profile_physics() -> None:
    predictor = ProfilePredictor(PROFILE)
    assert predictor.decode_s(32, 9000, 1100) == ph.decode_latency_s(PROFILE, 32, 9000, 1100)
    assert predictor.prefill_s(3000, 5e6, 1100) == ph.prefill_latency_from_sums_s(PROFILE, 3000, 5e6, 1100)


@pytest.mark.parametrize(
    ("batch_size", "bucket"),
    [(1, 8), (8, 8), (9, 16), (121, 128), (128, 128), (129, 256), (256, 256), (257, 384)],
)
def test_decode_buckets_end_at_multiples_of_8_then_of_128(batch_size: int, bucket: int) -> None:
    assert decode_bucket(batch_size) == bucket


def test_a_robust_fit_ignores_outliers_at_profiled_clocks() -> None:
    fitted = fit_predictor(_samples(outlier_share=0.15))
    for clock in PROFILED_CLOCKS:
        for tokens in (300, 2000, 6000):
            truth = ph.prefill_latency_s(PROFILE, [tokens], clock)
            assert fitted.prefill_s(tokens, tokens**2, clock) == pytest.approx(truth, rel=0.03)
        for batch, context in ((4, 4000), (60, 90_000), (250, 300_000)):
            truth = ph.decode_latency_s(PROFILE, batch, context, clock)
            assert fitted.decode_s(batch, context, clock) == pytest.approx(truth, rel=0.03)


def test_between_profiled_clocks_the_fit_interpolates_linearly() -> None:
    fitted = fit_predictor(_samples())
    low = fitted.decode_s(64, 64_000, 1290)
    high = fitted.decode_s(64, 64_000, 1590)
    assert fitted.decode_s(64, 64_000, 1440) == pytest.approx((low + high) / 2)
    assert fitted.decode_s(64, 64_000, 500) == fitted.decode_s(64, 64_000, 990)


def test_decode_pieces_capture_a_latency_jump_at_a_batch_tile() -> None:
    samples = []
    for batch in range(100, 160):
        step = 0.004 if batch > 128 else 0.0
        for context in (10_000, 50_000):
            latency = 0.010 + 0.0001 * batch + 1e-7 * context + step
            samples.append(LatencySample("decode", 1980, latency, batch_size=batch, context_tokens=context))
    samples += [LatencySample("prefill", 1980, 0.01 + 1e-5 * n, batch_tokens=n) for n in (100, 200, 400, 800)]
    fitted = fit_predictor(samples)
    jump = fitted.decode_s(129, 10_000, 1980) - fitted.decode_s(128, 10_000, 1980)
    assert jump == pytest.approx(0.004 + 0.0001, abs=3e-4)


def test_too_few_samples_cannot_be_fitted() -> None:
    with pytest.raises(FitError):
        fit_predictor([LatencySample("prefill", 1980, 0.1, batch_tokens=1000)])


def _true_decode_s(clock: int) -> float:
    return 1.15 * ph.decode_latency_s(PROFILE, 64, 64_000, clock)


def test_the_correction_converges_to_a_15_percent_slower_gpu_within_50_iterations() -> None:
    base = ProfilePredictor(PROFILE)
    online = OnlineCorrection(base)
    for i in range(50):
        clock = (1200, 1500)[i % 2]
        online.observe("decode", clock, base.decode_s(64, 64_000, clock), _true_decode_s(clock))
    for clock in (1200, 1500, 900):
        assert online.decode_s(64, 64_000, clock) == pytest.approx(_true_decode_s(clock), rel=0.02)
    assert online.prefill_s(2000, 4e6, 1500) == base.prefill_s(2000, 4e6, 1500)


def test_the_correction_stays_bounded_and_near_truth_under_noise_and_outliers() -> None:
    rng = random.Random(3)
    base = ProfilePredictor(PROFILE)
    settings = CorrectionSettings()
    online = OnlineCorrection(base, settings)
    for _ in range(400):
        measured = _true_decode_s(1500) * rng.lognormvariate(0.0, 0.2)
        if rng.random() < 0.05:
            measured *= rng.choice((0.01, 100.0))
        online.observe("decode", 1500, base.decode_s(64, 64_000, 1500), measured)
        factor = online.factor("decode", 1500)
        assert 1 / settings.factor_limit <= factor <= settings.factor_limit
    assert online.factor("decode", 1500) == pytest.approx(1.15, rel=0.12)


def test_the_correction_factor_is_clipped_even_when_every_sample_is_absurd() -> None:
    online = OnlineCorrection(ProfilePredictor(PROFILE), CorrectionSettings(factor_limit=2.0))
    for _ in range(500):
        online.observe("prefill", 1500, 0.1, 100.0)
    assert online.factor("prefill", 1500) == pytest.approx(2.0)


def test_stale_and_degenerate_samples_are_ignored() -> None:
    online = OnlineCorrection(ProfilePredictor(PROFILE), CorrectionSettings(max_age_s=0.5))
    assert not online.observe("decode", 1500, 0.02, 0.04, age_s=0.6)
    assert not online.observe("decode", 1500, 0.0, 0.04)
    assert not online.observe("decode", 1500, 0.02, float("nan"))
    assert online.factor("decode", 1500) == 1.0


def test_a_clock_bucket_with_its_own_samples_overrides_the_phase_factor() -> None:
    base = ProfilePredictor(PROFILE)
    online = OnlineCorrection(base)
    for _ in range(40):
        online.observe("decode", 1900, 1.0, 1.0)
        online.observe("decode", 900, 1.0, 1.3)
    assert online.factor("decode", 1900) == pytest.approx(1.0, abs=0.03)
    assert online.factor("decode", 900) == pytest.approx(1.3, rel=0.03)
