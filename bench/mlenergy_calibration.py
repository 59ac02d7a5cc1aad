"""Calibrate h100-sxm-llama-70b-tp4's step overhead and decode power on ML.ENERGY's measurements.

Source: ML.ENERGY blog, "LLM Inference Energy: A Longitudinal Analysis", 2026-02-09, and the
leaderboard v3 data it draws on: Llama-3.1-70B on 4x H100 SXM, vLLM 0.11.1, aggregated serving at
maximum clocks, the "Text Conversation" task, steady-state window; W per GPU and J per token
digitised from the post's charts (about +-2 %), the median inter-token latency (ITL) from the
leaderboard data.

Two fits, in this order, each from one published quantity (docs/physics.md, "Step overhead"):

1. **Step overhead from the ITL only.** ``joulescale twin steady`` runs the profile without its
   overhead; the published median ITL minus the twin's median ITL at each size is the time per
   step that the kernel database leaves out, fitted as ``fixed + per_sequence x max_num_seqs``
   by least squares.
2. **Decode power from W per GPU, through the twin's own accounting.** With the overhead in, the
   twin's W per GPU is linear in a constant decode power (no cap below the board limit), so two
   runs per size give the decode power at f_max that makes the twin's whole window, prefill
   chunks and overhead included, draw the published W: each part of a step is counted once (the
   chunks at prefill power). A logistic in log2(batch) through those nine points, with the batch
   taken as ``max_num_seqs``, is the profile's ``decode.power`` (``fmax_watts`` its top, ``batch``
   the rest).

J per token is fitted by neither: ``joulescale twin steady`` must reproduce it
(tests/unit/twin/test_twin_steady.py). Run ``python -m bench.mlenergy_calibration`` (about 10 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

from joulescale.profiles import load_profile
from joulescale.profiles.model import GpuProfile, PowerModel, StepOverhead
from joulescale.twin.steady import SteadySettings, measure_steady

SOURCE = ("ML.ENERGY blog, 'LLM Inference Energy: A Longitudinal Analysis', 2026-02-09: Llama-3.1-70B, "
          "4x H100 SXM, vLLM 0.11.1, aggregated, max clocks, Text Conversation, steady state")


@dataclass(frozen=True)
class Published:
    max_num_seqs: int
    joules_per_output_token: float
    watts_per_gpu: float


PUBLISHED: tuple[Published, ...] = tuple(
    Published(n, j, w) for n, j, w in (
        (16, 2.09, 451), (32, 1.21, 449), (64, 0.80, 500), (96, 0.65, 525), (128, 0.56, 546),
        (192, 0.51, 573), (256, 0.48, 589), (512, 0.42, 623), (1024, 0.37, 637),
    )
)


PUBLISHED_MEDIAN_ITL_MS: dict[int, float] = {16: 17.7, 32: 20.0, 128: 27.9, 256: 39.8}
"""Median inter-token latency by max_num_seqs, ML.ENERGY leaderboard v3 data (same runs)."""
PROFILE = "h100-sxm-llama-70b-tp4"
PROBE_WATTS = (300.0, 600.0)
"""Two constant decode powers at f_max, under the board limit: the twin's W is linear between them."""


@dataclass(frozen=True)
class OverheadFit:
    fixed_ms: float
    per_sequence_ms: float
    gaps_ms: dict[int, float]
    """Published median ITL minus the twin's without overhead, by max_num_seqs."""

    def ms(self, sequences: int) -> float:
        return self.fixed_ms + self.per_sequence_ms * sequences


def fit_overhead(profile: GpuProfile) -> OverheadFit:
    """Least-squares line through the ITL gaps of ``profile`` run without its step overhead."""
    bare = profile.model_copy(update={"step_overhead": None})
    gaps = {n: itl - 1000.0 * measure_steady(SteadySettings(bare, n)).median_itl_s
            for n, itl in PUBLISHED_MEDIAN_ITL_MS.items()}
    rows = np.array([[1.0, float(n)] for n in gaps])
    (fixed, per_sequence), *_ = np.linalg.lstsq(rows, np.array(list(gaps.values())), rcond=None)
    return OverheadFit(float(fixed), float(per_sequence), gaps)


def decode_power_points(profile: GpuProfile, overhead: StepOverhead | None) -> dict[int, float]:
    """Per max_num_seqs, the decode power at f_max for which the twin draws the published W per GPU."""
    points = {}
    for published in PUBLISHED:
        watts = []
        for probe in PROBE_WATTS:
            power = PowerModel(floor_watts=profile.decode.power.floor_watts, fmax_watts=probe,
                               gamma=profile.decode.power.gamma)
            probed = profile.model_copy(update={"step_overhead": overhead,
                                                "decode": profile.decode.model_copy(update={"power": power})})
            watts.append(measure_steady(SteadySettings(probed, published.max_num_seqs)).watts_per_gpu)
        low, high = PROBE_WATTS
        points[published.max_num_seqs] = low + (published.watts_per_gpu - watts[0]) * (high - low) / (watts[1] - watts[0])
    return points


@dataclass(frozen=True)
class BatchCurve:
    low_watts: float
    top_watts: float
    midpoint_log2: float
    steepness: float

    def watts(self, batch: float) -> float:
        x = self.steepness * (math.log2(batch) - self.midpoint_log2)
        return self.low_watts + (self.top_watts - self.low_watts) / (1.0 + math.exp(-x))


def _logistic(batch: np.ndarray, low: float, top: float, midpoint: float, steepness: float) -> np.ndarray:
    result: np.ndarray = low + (top - low) / (1.0 + np.exp(-steepness * (np.log2(batch) - midpoint)))
    return result


def fit(points: dict[int, float]) -> BatchCurve:
    """Least-squares logistic through (max_num_seqs, W); deterministic from its start point."""
    batch = np.array(list(points), dtype=float)
    watts = np.array(list(points.values()), dtype=float)
    start = (float(watts.min()), float(watts.max()), float(np.log2(np.median(batch))), 1.0)
    coefficients, _ = curve_fit(_logistic, batch, watts, p0=start, maxfev=10_000)
    low, top, midpoint, steepness = (float(c) for c in coefficients)
    return BatchCurve(low, top, midpoint, steepness)


def main() -> int:
    profile = load_profile(PROFILE)
    print(f"# {SOURCE}")
    overhead_fit = fit_overhead(profile)
    print(f"step_overhead: {{fixed_ms: {overhead_fit.fixed_ms:.3f}, per_sequence_ms: {overhead_fit.per_sequence_ms:.5f}}}")
    for n, gap in overhead_fit.gaps_ms.items():
        print(f"  {n:5d}: median ITL published {PUBLISHED_MEDIAN_ITL_MS[n]:5.1f} ms, twin without overhead "
              f"{PUBLISHED_MEDIAN_ITL_MS[n] - gap:5.1f} ms, gap {gap:5.2f} ms, line {overhead_fit.ms(n):5.2f} ms "
              f"(residual {gap - overhead_fit.ms(n):+.2f} ms)")
    shipped = profile.step_overhead
    for share in (0.0, 1.0):
        overhead = StepOverhead(fixed_ms=round(overhead_fit.fixed_ms, 3),
                                per_sequence_ms=round(overhead_fit.per_sequence_ms, 5), gpu_busy_share=share)
        points = decode_power_points(profile, overhead)
        print(f"decode power at f_max that draws the published W, overhead gpu_busy_share {share}: "
              + ", ".join(f"{n}: {w:.0f} W" for n, w in points.items())
              + f" (board limit {profile.power_limit_watts:.0f} W)")
    points = decode_power_points(profile, shipped)
    curve = fit(points)
    print(f"with the profile's step_overhead {shipped}:")
    print(f"fmax_watts: {curve.top_watts:.0f}")
    print(f"batch: {{low_watts: {curve.low_watts:.0f}, midpoint_log2: {curve.midpoint_log2:.2f}, "
          f"steepness: {curve.steepness:.3f}}}")
    for p in PUBLISHED:
        fitted = curve.watts(p.max_num_seqs)
        target = points[p.max_num_seqs]
        print(f"  {p.max_num_seqs:5d}: published {p.watts_per_gpu:5.0f} W, decode power {target:6.1f} W, "
              f"fit {fitted:6.1f} W ({fitted / target - 1:+.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
