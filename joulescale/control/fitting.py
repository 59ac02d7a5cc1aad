"""An offline predictor fitted from profiling samples (VoltanaLLM's EcoPred).

Per profiled clock: prefill t = a + b N + c S2; decode t = a + b B + c K, piecewise in B with
buckets that end at every multiple of 8 up to 128 and of 128 beyond (kernels tile the batch).
Each piece is a robust fit (RANSAC over minimal subsets, then non-negative least squares on
the inliers). Between profiled clocks the prediction is interpolated linearly. Fitting uses
numpy and scipy; prediction is plain floats.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from joulescale.engines.observation import Phase

if TYPE_CHECKING:
    import numpy as np

_SMALL_BATCH_STEP = 8
_SMALL_BATCH_LIMIT = 128
_LARGE_BATCH_STEP = 128


@dataclass(frozen=True, slots=True)
class LatencySample:
    """One measured iteration. Prefill: ``batch_tokens`` and ``squared_tokens``; decode:
    ``batch_size`` and ``context_tokens``."""

    phase: Phase
    sm_clock_mhz: int
    latency_s: float
    batch_tokens: int = 0
    squared_tokens: float = 0.0
    batch_size: int = 0
    context_tokens: int = 0


class FitError(ValueError):
    """Too few or inconsistent samples to fit a predictor."""


def decode_bucket(batch_size: int) -> int:
    """The upper end of the batch-size bucket: 8, 16, ..., 128, then 256, 384, ..."""
    step = _SMALL_BATCH_STEP if batch_size <= _SMALL_BATCH_LIMIT else _LARGE_BATCH_STEP
    return max(step, -(-batch_size // step) * step)


def robust_nonnegative_fit(
    features: np.ndarray, targets: np.ndarray, trials: int = 64, tolerance: float = 0.1, seed: int = 0
) -> tuple[float, ...]:
    """Non-negative coefficients robust to outliers: RANSAC over minimal subsets, NNLS refit.

    Residuals are relative (latency noise scales with latency); a sample is an inlier of a trial
    when it is within ``tolerance`` of it. The final fit minimises relative error over the
    inliers of the best trial. Deterministic (seeded).
    """
    import numpy as np
    from scipy.optimize import nnls  # offline only: keeps importing joulescale.control light

    rows, columns = features.shape
    if rows < columns:
        raise FitError(f"{rows} samples cannot fit {columns} coefficients")
    if np.any(targets <= 0):
        raise FitError("latencies must be positive")
    scaled = features / targets[:, None]
    ones = np.ones(rows)
    rng = np.random.default_rng(seed)
    best_inliers = np.ones(rows, dtype=bool)
    best_score = (-1, 0.0)
    for _ in range(trials if rows > columns else 0):
        subset = rng.choice(rows, size=columns, replace=False)
        coefficients, _ = nnls(scaled[subset], ones[subset])
        relative = np.abs(scaled @ coefficients - 1.0)
        inliers = relative <= tolerance
        score = (int(inliers.sum()), -float(relative[inliers].sum()))
        if score > best_score:
            best_score, best_inliers = score, inliers
    coefficients, _ = nnls(scaled[best_inliers], ones[best_inliers])
    return tuple(float(c) for c in coefficients)


class FittedPredictor:
    """A ``LatencyPredictor`` from per-clock, per-bucket robust fits."""

    def __init__(
        self,
        prefill: dict[int, tuple[float, ...]],
        decode: dict[int, dict[int, tuple[float, ...]]],
    ) -> None:
        self._prefill_clocks = sorted(prefill)
        self._prefill = prefill
        self._decode_clocks = sorted(decode)
        self._decode = decode

    def prefill_s(self, batch_tokens: int, squared_tokens: float, sm_clock_mhz: float) -> float:
        if batch_tokens <= 0:
            return 0.0

        def at(clock: int) -> float:
            a, b, c = self._prefill[clock]
            return a + b * batch_tokens + c * squared_tokens

        return _interpolate(self._prefill_clocks, sm_clock_mhz, at)

    def decode_s(self, batch_size: int, context_tokens: int, sm_clock_mhz: float) -> float:
        if batch_size <= 0:
            return 0.0
        bucket = decode_bucket(batch_size)

        def at(clock: int) -> float:
            pieces = self._decode[clock]
            a, b, c = pieces.get(bucket) or pieces[_nearest(sorted(pieces), bucket)]
            return a + b * batch_size + c * context_tokens

        return _interpolate(self._decode_clocks, sm_clock_mhz, at)


def fit_predictor(samples: Iterable[LatencySample], min_samples_per_piece: int = 4) -> FittedPredictor:
    """Fit prefill and decode from samples; each needs at least one clock with enough samples."""
    import numpy as np

    prefill_rows: dict[int, list[LatencySample]] = defaultdict(list)
    decode_rows: dict[tuple[int, int], list[LatencySample]] = defaultdict(list)
    for sample in samples:
        if sample.phase == "prefill":
            prefill_rows[sample.sm_clock_mhz].append(sample)
        else:
            decode_rows[(sample.sm_clock_mhz, decode_bucket(sample.batch_size))].append(sample)
    prefill: dict[int, tuple[float, ...]] = {}
    for clock, rows in prefill_rows.items():
        if len(rows) >= min_samples_per_piece:
            x = np.array([[1.0, s.batch_tokens, s.squared_tokens] for s in rows])
            prefill[clock] = robust_nonnegative_fit(x, np.array([s.latency_s for s in rows]))
    decode: dict[int, dict[int, tuple[float, ...]]] = defaultdict(dict)
    for (clock, bucket), rows in decode_rows.items():
        if len(rows) >= min_samples_per_piece:
            x = np.array([[1.0, s.batch_size, s.context_tokens] for s in rows])
            decode[clock][bucket] = robust_nonnegative_fit(x, np.array([s.latency_s for s in rows]))
    if not prefill or not decode:
        raise FitError("need enough prefill and decode samples at one clock at least")
    return FittedPredictor(prefill, dict(decode))


def _nearest(buckets: Sequence[int], bucket: int) -> int:
    return min(buckets, key=lambda b: (abs(b - bucket), b))


def _interpolate(clocks: Sequence[int], sm_clock_mhz: float, at: Callable[[int], float]) -> float:
    """Linear in the clock between the two profiled clocks around it; clamped outside."""
    if sm_clock_mhz <= clocks[0]:
        return at(clocks[0])
    if sm_clock_mhz >= clocks[-1]:
        return at(clocks[-1])
    upper = bisect.bisect_left(clocks, sm_clock_mhz)
    high, low = clocks[upper], clocks[upper - 1]
    if high == sm_clock_mhz:
        return at(high)
    weight = (sm_clock_mhz - low) / (high - low)
    return at(low) * (1.0 - weight) + at(high) * weight
