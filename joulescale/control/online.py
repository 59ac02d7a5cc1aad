"""Online latency correction: learns from observed iterations on top of an offline predictor.

A multiplicative correction per (phase, clock bucket), an EWMA of log(observed / predicted),
keeps the offline model as the prior. It converges to a GPU that runs uniformly slower or
faster (thermal throttling, another model build) within tens of iterations and stays bounded:
each sample's distance from the estimate is clipped, the factor itself is clipped, and samples older than
``max_age_s`` are ignored. Until a clock bucket has its own samples it uses the phase's factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from joulescale.control.predictor import LatencyPredictor
from joulescale.engines.observation import Phase


@dataclass(frozen=True, slots=True)
class CorrectionSettings:
    alpha: float = 0.12
    """EWMA weight of one sample (higher: faster but noisier)."""
    sample_ratio_limit: float = 1.5
    """One sample counts as at most this factor (or its inverse) away from the current estimate,
    so an outlier moves the estimate a bounded step while a real change is tracked over samples."""
    factor_limit: float = 2.0
    """The correction factor stays in [1 / limit, limit]."""
    max_age_s: float = 1.0
    """Samples measured longer ago than this are stale and ignored."""
    bucket_mhz: float = 150.0
    """Width of a clock bucket."""
    bucket_min_samples: int = 5
    """Samples a bucket needs before its own factor replaces the phase's factor."""


@dataclass(slots=True)
class _Estimate:
    log_factor: float = 0.0
    samples: int = 0


class OnlineCorrection:
    """A ``LatencyPredictor`` = base prediction x learnt factor for the phase and clock bucket."""

    def __init__(self, base: LatencyPredictor, settings: CorrectionSettings | None = None) -> None:
        self.base = base
        self.settings = settings or CorrectionSettings()
        self._phase: dict[Phase, _Estimate] = {"prefill": _Estimate(), "decode": _Estimate()}
        self._buckets: dict[tuple[Phase, int], _Estimate] = {}
        self._log_sample_limit = math.log(self.settings.sample_ratio_limit)
        self._log_factor_limit = math.log(self.settings.factor_limit)
        self._factor_cache: dict[tuple[Phase, int], float] = {}
        self._learnt = 0

    @property
    def version(self) -> int:
        """Changes with every sample learnt and every change of the base predictor's inputs (a
        ``version`` of its own, as ``MixedStepPredictor``'s decode load), so a caller can tell its
        predictions are still current."""
        return self._learnt + int(getattr(self.base, "version", 0))

    def factor(self, phase: Phase, sm_clock_mhz: float) -> float:
        """The current multiplicative correction at a clock."""
        key = (phase, int(sm_clock_mhz // self.settings.bucket_mhz))
        cached = self._factor_cache.get(key)
        if cached is not None:
            return cached
        bucket = self._buckets.get(key)
        if bucket is not None and bucket.samples >= self.settings.bucket_min_samples:
            value = math.exp(bucket.log_factor)
        else:
            value = math.exp(self._phase[phase].log_factor)
        self._factor_cache[key] = value
        return value

    def prefill_s(self, batch_tokens: int, squared_tokens: float, sm_clock_mhz: float) -> float:
        base = self.base.prefill_s(batch_tokens, squared_tokens, sm_clock_mhz)
        return base * self.factor("prefill", sm_clock_mhz)

    def decode_s(self, batch_size: int, context_tokens: int, sm_clock_mhz: float) -> float:
        base = self.base.decode_s(batch_size, context_tokens, sm_clock_mhz)
        return base * self.factor("decode", sm_clock_mhz)

    def observe(
        self,
        phase: Phase,
        sm_clock_mhz: float,
        base_prediction_s: float,
        measured_s: float,
        age_s: float = 0.0,
    ) -> bool:
        """Learn from one iteration; ``base_prediction_s`` is the *uncorrected* prediction.

        Returns whether the sample was used (stale or degenerate samples are not).
        """
        if age_s > self.settings.max_age_s or base_prediction_s <= 0 or measured_s <= 0:
            return False
        if not math.isfinite(measured_s) or not math.isfinite(base_prediction_s):
            return False
        sample = math.log(measured_s / base_prediction_s)
        key = (phase, int(sm_clock_mhz // self.settings.bucket_mhz))
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Estimate(log_factor=self._phase[phase].log_factor)
            self._buckets[key] = bucket
        limit = self._log_sample_limit
        for estimate in (self._phase[phase], bucket):
            error = min(max(sample - estimate.log_factor, -limit), limit)
            moved = estimate.log_factor + self.settings.alpha * error
            estimate.log_factor = min(max(moved, -self._log_factor_limit), self._log_factor_limit)
            estimate.samples += 1
        self._factor_cache.clear()
        self._learnt += 1
        return True
