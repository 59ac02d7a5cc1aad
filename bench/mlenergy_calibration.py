"""Fit the batch power curve of h100-sxm-llama-70b-tp4 to ML.ENERGY's published measurements.

Source: ML.ENERGY blog, "LLM Inference Energy: A Longitudinal Analysis", 2026-02-09.
Llama-3.1-70B on 4x H100 SXM, vLLM 0.11.1, aggregated serving at maximum clocks, the "Text
Conversation" task, steady-state window; values digitised from the post's charts (about +-2 %).

The fit: power per GPU at f_max against the batch, a logistic in log2(batch) with the running
batch taken as ``max_num_seqs`` (an engine kept full runs that many sequences while its KV cache
holds them). Least squares on all nine points. The result goes into the profile's
``decode.power`` (``fmax_watts`` is the top of the curve, ``batch`` the rest); the J per token
column is not fitted: ``joulescale twin steady`` must reproduce it (tests/unit/twin/test_twin_steady.py).

Run ``python -m bench.mlenergy_calibration`` to print the coefficients and residuals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

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


def fit(points: tuple[Published, ...] = PUBLISHED) -> BatchCurve:
    """Least-squares logistic through (max_num_seqs, W per GPU); deterministic from its start point."""
    batch = np.array([p.max_num_seqs for p in points], dtype=float)
    watts = np.array([p.watts_per_gpu for p in points], dtype=float)
    start = (float(watts.min()), float(watts.max()), float(np.log2(np.median(batch))), 1.0)
    coefficients, _ = curve_fit(_logistic, batch, watts, p0=start, maxfev=10_000)
    low, top, midpoint, steepness = (float(c) for c in coefficients)
    return BatchCurve(low, top, midpoint, steepness)


def main() -> int:
    curve = fit()
    print(f"# {SOURCE}")
    print(f"fmax_watts: {curve.top_watts:.0f}")
    print(f"batch: {{low_watts: {curve.low_watts:.0f}, midpoint_log2: {curve.midpoint_log2:.2f}, "
          f"steepness: {curve.steepness:.3f}}}")
    for p in PUBLISHED:
        fitted = curve.watts(p.max_num_seqs)
        print(f"  {p.max_num_seqs:5d}: published {p.watts_per_gpu:5.0f} W, fit {fitted:6.1f} W "
              f"({fitted / p.watts_per_gpu - 1:+.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
