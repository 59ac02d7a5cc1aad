"""What the planner remembers over a long horizon: the burst rate its SLO percentile sees, and
the longest prompt and request, so neither a quiet interval nor a window without the long prompt
makes it forget them.

- **Burst rate.** A P99 latency is made of the requests that arrive in the busiest minutes: a
  queue builds when the arrivals of a sub-window outrun the capacity. The burst rate is the
  sub-window rate that all but ``1 - percentile`` of the remembered requests arrived at or below
  (a quantile weighted by requests, ``burst_rps``). Capacity kept for it over ``memory_s`` is
  what holds the SLO when bursts recur faster than a replica starts: a burst that arrives after
  a quiet interval finds the capacity the last burst needed, where a plan from the quiet
  interval's mean would find a replica still starting.
- **The starting placement** (``hold``) stands for load the planner has not seen: its capacity
  is held for one memory horizon, as Kubernetes' HorizontalPodAutoscaler counts the running
  replicas as a recommendation of its stabilisation window.
- **Longest lengths** (``widen``): an instance whose KV cache cannot hold the longest prompt seen
  over the memory is no candidate, though the latest windows lack that prompt.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from joulescale.engines.observation import Phase
from joulescale.planning.candidates import Candidate, CandidateTable
from joulescale.planning.forecast import ForecastErrors, LengthMix, make_forecaster, round_up_to_grid
from joulescale.planning.placement import Placement
from joulescale.planning.window import TrafficWindow


@dataclass(frozen=True, slots=True)
class _Seen:
    end_s: float
    sub_rates: tuple[tuple[float, int], ...]
    longest_prompt: int
    longest_request: int


def request_weighted_quantile(rates: list[tuple[float, int]], quantile: float) -> float:
    """The lowest rate r such that at most ``1 - quantile`` of the requests arrived in sub-windows
    faster than r (``rates``: (rate, arrivals) per sub-window)."""
    total = sum(n for _, n in rates)
    if total == 0:
        return 0.0
    allowed = (1.0 - quantile) * total
    above = 0
    for rate, count in sorted(rates, reverse=True):
        if above + count > allowed + 1e-9:
            return rate
        above += count
    return 0.0


class TrafficMemory:
    def __init__(self, memory_s: float, percentile: float) -> None:
        if memory_s < 0 or not 0.0 < percentile <= 100.0:
            raise ValueError("memory_s must be >= 0 and the percentile in (0, 100]")
        self.memory_s = memory_s
        self.quantile = percentile / 100.0
        self._seen: deque[_Seen] = deque()
        self._held = Placement()
        self._held_until_s = float("-inf")

    def observe(self, window: TrafficWindow) -> None:
        longest_request = max((p + o for p, o in zip(window.prompt_tokens, window.output_tokens, strict=True)),
                              default=0)
        self._seen.append(_Seen(window.end_s, tuple(window.sub_rates()), max(window.prompt_tokens, default=0),
                                longest_request))
        while self._seen and self._seen[0].end_s <= window.end_s - self.memory_s:
            self._seen.popleft()

    def hold(self, placement: Placement, now_s: float) -> None:
        """Keep the capacity of ``placement`` (the starting one) until one memory from ``now_s``."""
        self._held = placement
        self._held_until_s = now_s + self.memory_s

    def burst_rps(self) -> float:
        """The burst rate of the remembered sub-windows at the SLO percentile (0: nothing seen)."""
        return request_weighted_quantile([r for seen in self._seen for r in seen.sub_rates], self.quantile)

    def floor_rps(self, phase: Phase, now_s: float, tables: Mapping[Candidate, CandidateTable]) -> float:
        """The capacity ``phase`` must keep now: the burst rate, or the held start's capacity on
        ``tables`` (the current length mix) while it lasts."""
        held = self._held.capacity_rps(phase, tables) if now_s < self._held_until_s else 0.0
        return max(self.burst_rps(), held)

    def widen(self, mix: LengthMix) -> LengthMix:
        """``mix`` with the longest prompt and request raised to the longest remembered."""
        prompt = max((s.longest_prompt for s in self._seen), default=0)
        request = max((s.longest_request for s in self._seen), default=0)
        return dataclasses.replace(
            mix, longest_prompt_tokens=max(mix.longest_prompt_tokens, round_up_to_grid(prompt) if prompt else 0),
            longest_request_tokens=max(mix.longest_request_tokens, round_up_to_grid(request) if request else 0))


def burst_forecast_errors(name: str, windows: Sequence[TrafficWindow], memory_s: float,
                          percentile: float) -> ForecastErrors:
    """Forecaster ``name`` replayed over ``windows`` against the rate the SLO percentile sees: each
    next window's burst rate (its sub-window rates at ``percentile``, weighted by requests). With a
    memory (``memory_s`` > 0) the rate covered is the larger of the forecast and the remembered
    burst rate, as the planner plans; the result is named ``<name>+memory``."""
    forecaster = make_forecaster(name)
    memory = TrafficMemory(memory_s, percentile)
    errors: list[float] = []
    for window in windows:
        forecast = forecaster.forecast()
        actual = request_weighted_quantile(window.sub_rates(), memory.quantile)
        if forecast is not None and window.arrivals and actual > 0:
            covered = max(forecast.rate_rps, memory.burst_rps()) if memory_s > 0 else forecast.rate_rps
            errors.append((covered - actual) / actual)
        forecaster.observe(window)
        memory.observe(window)
    if not errors:
        raise ValueError("forecast errors need at least two windows with requests")
    return ForecastErrors.of(f"{name}+memory" if memory_s > 0 else name, errors)
