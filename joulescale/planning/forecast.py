"""Forecasting the next interval's traffic from the windows observed so far.

Two forecasters, chosen by name (``FORECASTERS``):

- ``last-window``: BiScale's rule, the next interval looks like the last one.
- ``ewma-upper``: the larger of an exponentially weighted mean of recent rates and an upper
  quantile (by default the peak) of the last two windows' rates, so one quiet window after a burst
  does not shrink the cluster, while a sustained fall still lowers the forecast step by step. This
  is the rule of Kubernetes' HorizontalPodAutoscaler, which scales down only to the highest
  recommendation of its stabilisation window (five minutes by default), with an EWMA for the decay. The length mix pools the recent
  windows. It is the default: on trace replays it misses fewer bursts (docs/planner.md has the
  measured errors, ``forecast_errors`` measures them).

A ``LengthMix`` summarises lengths by equal-probability quantiles rounded on a geometric grid, so
two windows whose mixes differ by less than a bucket share one candidate table (cached by the twin).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from joulescale.planning.window import TrafficWindow

MIX_POINTS = 32
"""Quantiles kept per length distribution: the midpoints of 32 equal-probability slices, so the
longest point stands for the top 3 % of prompts (what a P99 TTFT is made of)."""
MIX_GRID_RATIO = 1.1
"""Lengths are rounded to the nearest power of 1.1: drifts under about 5 % keep the same mix."""


@dataclass(frozen=True, slots=True)
class LengthMix:
    """Prompt and output lengths as ``MIX_POINTS`` equally likely values each (rounded, ascending),
    and the longest prompt and request seen (rounded up to the grid): an instance whose KV cache
    cannot hold them cannot serve the mix, however rare they are."""

    prompt_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]
    longest_prompt_tokens: int = 0
    longest_request_tokens: int = 0
    """Prompt plus output tokens of the longest request."""

    @classmethod
    def of(cls, prompt_tokens: Sequence[int], output_tokens: Sequence[int]) -> LengthMix:
        if not prompt_tokens or not output_tokens:
            raise ValueError("a length mix needs at least one request")
        longest = max(p + o for p, o in zip(prompt_tokens, output_tokens, strict=False))
        return cls(_points(prompt_tokens), _points(output_tokens), round_up_to_grid(max(prompt_tokens)),
                   round_up_to_grid(longest))

    @property
    def mean_prompt_tokens(self) -> float:
        return sum(self.prompt_tokens) / len(self.prompt_tokens)

    @property
    def mean_output_tokens(self) -> float:
        return sum(self.output_tokens) / len(self.output_tokens)

    def key(self) -> list[list[int]]:
        """What a cache keys on (JSON-friendly)."""
        return [list(self.prompt_tokens), list(self.output_tokens), [self.longest_prompt_tokens,
                                                                     self.longest_request_tokens]]


def _round_to_grid(value: float) -> int:
    step = round(math.log(max(value, 1.0)) / math.log(MIX_GRID_RATIO))
    return max(1, round(MIX_GRID_RATIO ** step))


def round_up_to_grid(value: float) -> int:
    return max(1, math.ceil(MIX_GRID_RATIO ** math.ceil(math.log(max(value, 1.0)) / math.log(MIX_GRID_RATIO))))


def _points(values: Sequence[int]) -> tuple[int, ...]:
    ordered = sorted(values)
    n = len(ordered)
    return tuple(_round_to_grid(ordered[min(n - 1, int((i + 0.5) * n / MIX_POINTS))]) for i in range(MIX_POINTS))


@dataclass(frozen=True, slots=True)
class Forecast:
    rate_rps: float
    """Requests per second the next interval is planned for."""
    mix: LengthMix

    @property
    def tokens_per_second(self) -> float:
        """Output tokens per second at the forecast rate (the J/token denominator)."""
        return self.rate_rps * self.mix.mean_output_tokens


class Forecaster(Protocol):
    """Stateful: ``observe`` each closed window in order, then ``forecast`` the next interval."""

    name: str

    def observe(self, window: TrafficWindow) -> None: ...

    def forecast(self) -> Forecast | None:
        """None until a window with requests has been observed."""
        ...


class LastWindow:
    """BiScale's rule: the next interval's rate and mix are the last window's."""

    name = "last-window"

    def __init__(self) -> None:
        self._last: TrafficWindow | None = None
        self._mix: LengthMix | None = None

    def observe(self, window: TrafficWindow) -> None:
        self._last = window
        if window.prompt_tokens:
            self._mix = LengthMix.of(window.prompt_tokens, window.output_tokens)

    def forecast(self) -> Forecast | None:
        if self._last is None or self._mix is None:
            return None
        return Forecast(self._last.rate_rps, self._mix)


class EwmaUpper:
    """max(EWMA of rates, ``quantile`` of the last ``history`` rates); the mix pools those windows."""

    name = "ewma-upper"

    def __init__(self, alpha: float = 0.5, history: int = 2, quantile: float = 1.0) -> None:
        if not 0.0 < alpha <= 1.0 or history < 1 or not 0.0 <= quantile <= 1.0:
            raise ValueError("alpha in (0, 1], history >= 1 and quantile in [0, 1]")
        self.alpha, self.quantile = alpha, quantile
        self._rates: deque[float] = deque(maxlen=history)
        self._samples: deque[tuple[tuple[int, ...], tuple[int, ...]]] = deque(maxlen=history)
        self._ewma: float | None = None

    def observe(self, window: TrafficWindow) -> None:
        rate = window.rate_rps
        self._ewma = rate if self._ewma is None else self.alpha * rate + (1.0 - self.alpha) * self._ewma
        self._rates.append(rate)
        if window.prompt_tokens:
            self._samples.append((window.prompt_tokens, window.output_tokens))

    def forecast(self) -> Forecast | None:
        if self._ewma is None or not self._samples:
            return None
        ordered = sorted(self._rates)
        upper = ordered[min(len(ordered) - 1, math.ceil(self.quantile * len(ordered)) - 1)] if ordered else 0.0
        prompts = [n for p, _ in self._samples for n in p]
        outputs = [n for _, o in self._samples for n in o]
        return Forecast(max(self._ewma, upper), LengthMix.of(prompts, outputs))


FORECASTERS: dict[str, Callable[[], Forecaster]] = {"ewma-upper": EwmaUpper, "last-window": LastWindow}
DEFAULT_FORECASTER = "ewma-upper"


def make_forecaster(name: str) -> Forecaster:
    try:
        return FORECASTERS[name]()
    except KeyError:
        raise ValueError(f"unknown forecaster {name!r}; known: {', '.join(FORECASTERS)}") from None


@dataclass(frozen=True, slots=True)
class ForecastErrors:
    """A forecaster replayed over consecutive windows: each forecast against the next window."""

    forecaster: str
    windows: int
    mean_abs_pct: float
    """Mean |forecast - actual| / actual, in %."""
    under_share: float
    """Share of windows whose actual rate exceeded the forecast by more than 10 % (SLO at risk)."""
    worst_under_pct: float
    """The largest shortfall, in % of the actual rate."""
    mean_over_pct: float
    """Mean over-forecast, in % of the actual rate (capacity paid for and not used)."""

    @classmethod
    def of(cls, forecaster: str, errors: Sequence[float]) -> ForecastErrors:
        """From relative errors, (forecast - actual) / actual, one per window."""
        n = len(errors)
        return cls(forecaster, n, 100.0 * sum(abs(e) for e in errors) / n, sum(1 for e in errors if e < -0.1) / n,
                   100.0 * max(0.0, -min(errors)), 100.0 * sum(max(0.0, e) for e in errors) / n)

    def to_json(self) -> dict[str, float | int | str]:
        return {"forecaster": self.forecaster, "windows": self.windows, "mean_abs_pct": self.mean_abs_pct,
                "under_share": self.under_share, "worst_under_pct": self.worst_under_pct,
                "mean_over_pct": self.mean_over_pct}


def forecast_errors(name: str, windows: Sequence[TrafficWindow]) -> ForecastErrors:
    """Replay ``windows`` in order through a fresh forecaster named ``name``."""
    forecaster = make_forecaster(name)
    errors: list[float] = []
    for window in windows:
        forecast = forecaster.forecast()
        if forecast is not None and window.arrivals:
            errors.append((forecast.rate_rps - window.rate_rps) / window.rate_rps)
        forecaster.observe(window)
    if not errors:
        raise ValueError("forecast errors need at least two windows with requests")
    return ForecastErrors.of(name, errors)
