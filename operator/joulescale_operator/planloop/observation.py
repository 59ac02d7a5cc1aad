"""One service's window of metrics, read through a MetricsSource (pure: the source is a seam)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from joulescale.engines.observation import Phase
from joulescale_operator.planloop.histogram import WindowHistogram
from joulescale_operator.planloop.promql import ServiceQueries
from joulescale_operator.planloop.source import MetricsSource, Sample

ROLES: tuple[Phase, Phase] = ("prefill", "decode")


class NoData(Exception):
    """Prometheus answered, but holds no engine series of the service in the window."""


@dataclass(frozen=True, slots=True)
class ServiceObservation:
    window_s: float
    end_s: float
    requests: Mapping[str, float]
    """Requests whose first token an engine of each role recorded (the TTFT histogram's count)."""
    reporting_pods: Mapping[str, int]
    prompt_tokens: Mapping[str, float]
    generation_tokens: Mapping[str, float]
    ttft: WindowHistogram | None
    inter_token: WindowHistogram | None
    energy_j: Mapping[str, float]
    sm_clock_mhz: Mapping[str, float]
    prompt_lengths: WindowHistogram | None = None
    output_lengths: WindowHistogram | None = None
    energy_span_s: Mapping[str, float] = field(default_factory=dict)
    """Per role, the seconds of the window its energy counters cover (at most the window)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def arrivals(self) -> float:
        """Requests served in the window: prefill's count (every request passes prefill first)."""
        return self.requests.get("prefill", self.requests.get("decode", 0.0))

    @property
    def output_tokens(self) -> float:
        """Output tokens the users got: decode's count where decode reports, else prefill's."""
        if "decode" in self.generation_tokens:
            return self.generation_tokens["decode"]
        return self.generation_tokens.get("prefill", 0.0)

    def mean_prompt_tokens(self) -> float | None:
        served = self.requests.get("prefill", 0.0)
        return self.prompt_tokens.get("prefill", 0.0) / served if served > 0 else None

    def mean_output_tokens(self) -> float | None:
        served = self.requests.get("decode", 0.0)
        return self.generation_tokens.get("decode", 0.0) / served if served > 0 else None


def observe(source: MetricsSource, queries: ServiceQueries, end_s: float, window_s: float) -> ServiceObservation:
    """Read the window ending at ``end_s``. MetricsUnavailable when Prometheus cannot answer;
    NoData when it answers without any engine series of the service."""
    requests = _by_role(source.vector(queries.requests_by_role, end_s))
    if not requests:
        raise NoData(f"no engine series for the service in the last {window_s:.0f} s")
    reporting = {role: int(n) for role, n in _by_role(source.vector(queries.reporting_pods_by_role, end_s)).items()}
    return ServiceObservation(
        window_s=window_s,
        end_s=end_s,
        requests=requests,
        reporting_pods=reporting,
        prompt_tokens=_by_role(source.vector(queries.prompt_tokens_by_role, end_s)),
        generation_tokens=_by_role(source.vector(queries.generation_tokens_by_role, end_s)),
        ttft=WindowHistogram.of(source.vector(queries.ttft_buckets, end_s)),
        inter_token=WindowHistogram.of(source.vector(queries.inter_token_buckets, end_s)),
        energy_j=_by_role(source.vector(queries.energy_by_role, end_s)),
        energy_span_s={
            role: min(span, window_s)
            for role, span in _by_role(source.vector(queries.energy_span_by_role, end_s)).items()
            if span > 0
        },
        sm_clock_mhz=_by_role(source.vector(queries.sm_clock_by_role, end_s)),
        prompt_lengths=_optional_histogram(source, queries.prompt_length_buckets, end_s),
        output_lengths=_optional_histogram(source, queries.output_length_buckets, end_s),
    )


def _optional_histogram(source: MetricsSource, expr: str | None, end_s: float) -> WindowHistogram | None:
    return WindowHistogram.of(source.vector(expr, end_s)) if expr is not None else None


def _by_role(samples: list[Sample]) -> dict[str, float]:
    """role -> value, NaN dropped (increase over a series born in the window can be NaN)."""
    return {
        labels["role"]: value
        for labels, value in samples
        if labels.get("role") in ROLES and value == value
    }
