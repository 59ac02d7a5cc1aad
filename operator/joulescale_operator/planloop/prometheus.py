"""The MetricsSource over a Prometheus server, through prometheus-api-client (the shell)."""

from __future__ import annotations

import math

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from joulescale_operator.planloop.source import MetricsUnavailable, Sample

QUERY_TIMEOUT_S = 5
"""One query's limit: a planning pass must not hang on a Prometheus that accepts and stalls."""


class PrometheusSource:
    def __init__(self, url: str, timeout_s: int = QUERY_TIMEOUT_S) -> None:
        # One quick retry on a dropped connection; an outage is the next pass's business, not a
        # backoff's inside this one (the client's default waits seconds per query).
        retry = Retry(total=1, backoff_factor=0.0, status_forcelist=(502, 503, 504))
        self._client = PrometheusConnect(url=url, retry=retry, timeout=timeout_s)
        self.url = url

    def vector(self, expr: str, at_s: float) -> list[Sample]:
        try:
            result = self._client.custom_query(expr, params={"time": f"{at_s:.3f}"})
        except (requests.RequestException, PrometheusApiClientException, ValueError) as error:
            raise MetricsUnavailable(f"Prometheus at {self.url} did not answer: {type(error).__name__}") from error
        samples: list[Sample] = []
        for item in result if isinstance(result, list) else []:
            labels = item.get("metric", {}) if isinstance(item, dict) else {}
            value = item.get("value") if isinstance(item, dict) else None
            try:
                number = float(value[1])  # type: ignore[index]
            except (TypeError, ValueError, IndexError):
                continue
            if not math.isinf(number):
                samples.append(({str(k): str(v) for k, v in labels.items()}, number))
        return samples

    def close(self) -> None:
        self._client.close()
