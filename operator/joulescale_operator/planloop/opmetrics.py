"""The operator's own metrics (the planner loop's): a registry per operator instance."""

from __future__ import annotations

import contextlib

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram

# No ``_created`` series: a timestamp per label set that no dashboard or rule reads.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

SERVICE_LABELS = ("namespace", "service")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.plan_duration = Histogram(
            "joulescale_operator_plan_duration_seconds",
            "One planning pass of one service: Prometheus queries, the planner, the status write.",
            SERVICE_LABELS,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self.plan_changes = Counter(
            "joulescale_operator_plan_changes", "Plans that changed replicas or base clocks.", SERVICE_LABELS,
            registry=r,
        )
        self.plan_passes = Counter(
            "joulescale_operator_plan_passes",
            "Planning passes by outcome (planned, unavailable, failed, skipped).",
            (*SERVICE_LABELS, "outcome"),
            registry=r,
        )
        self.prometheus_errors = Counter(
            "joulescale_operator_prometheus_errors",
            "Passes that found Prometheus unreachable or without the service's data.",
            SERVICE_LABELS,
            registry=r,
        )

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """/metrics on ``port`` in a daemon thread."""
        prometheus_client.start_http_server(port, addr=address, registry=self.registry)

    def forget(self, namespace: str, service: str) -> None:
        """Drop a deleted service's series."""
        for metric in (self.plan_duration, self.plan_changes, self.prometheus_errors):
            with contextlib.suppress(KeyError):
                metric.remove(namespace, service)
        for outcome in ("planned", "unavailable", "failed", "skipped"):
            with contextlib.suppress(KeyError):
                self.plan_passes.remove(namespace, service, outcome)
