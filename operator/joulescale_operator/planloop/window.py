"""A ServiceObservation -> the core's TrafficWindow (pure).

Lengths come from the engines' per-request length histograms where the engine publishes them
(vLLM's request_prompt_tokens / request_generation_tokens), each bucket a sample at its upper
bound; otherwise from the token counters' means (total prompt tokens / requests), one sample per
request up to LENGTH_SAMPLES: the mix then has no spread, which docs/operator.md says.
"""

from __future__ import annotations

from joulescale.planning import TrafficWindow
from joulescale_operator.planloop.histogram import WindowHistogram
from joulescale_operator.planloop.observation import ServiceObservation

LENGTH_SAMPLES = 64
"""Samples per length distribution handed to the forecaster (its mix keeps 32 quantiles)."""


def traffic_window(observation: ServiceObservation) -> TrafficWindow:
    arrivals = max(0, round(observation.arrivals))
    count = min(arrivals, LENGTH_SAMPLES)
    prompts = _lengths(observation.prompt_lengths, observation.mean_prompt_tokens(), count)
    outputs = _lengths(observation.output_lengths, observation.mean_output_tokens(), count)
    if not prompts or not outputs:
        prompts, outputs = [], []
    size = min(len(prompts), len(outputs))
    return TrafficWindow(
        start_s=observation.end_s - observation.window_s,
        end_s=observation.end_s,
        arrivals=arrivals,
        prompt_tokens=tuple(sorted(prompts)[:size]),
        output_tokens=tuple(sorted(outputs)[:size]),
    )


def _lengths(histogram: WindowHistogram | None, mean: float | None, count: int) -> list[int]:
    if count <= 0:
        return []
    if histogram is not None and histogram.count > 0:
        return histogram.samples(LENGTH_SAMPLES)
    if mean is None or mean <= 0:
        return []
    return [max(1, round(mean))] * count
