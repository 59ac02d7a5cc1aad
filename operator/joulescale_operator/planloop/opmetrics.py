"""The operator's own metrics (the planner loop's): a registry per operator instance."""

from __future__ import annotations

import contextlib
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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

        self.planned_replicas = Gauge(
            "joulescale_operator_planned_replicas", "Replicas of the current plan, by role.",
            (*SERVICE_LABELS, "role"), registry=r,
        )
        self.planned_base_clock = Gauge(
            "joulescale_operator_planned_base_clock_mhz", "Base SM clock of the current plan, by role, in MHz.",
            (*SERVICE_LABELS, "role"), registry=r,
        )
        self.estimated_saving = Gauge(
            "joulescale_operator_estimated_saving_ratio",
            "status.energy.estimatedSavingPercent / 100: GPU energy saved against static maximum clocks (an estimate).",
            SERVICE_LABELS, registry=r,
        )

    def record_status(self, namespace: str, service: str, status: dict[str, Any]) -> None:
        """The plan's and the energy's gauges from the status as stored."""
        plan = status.get("plan") or {}
        for role in ("prefill", "decode"):
            if isinstance(plan.get(f"{role}Replicas"), int):
                self.planned_replicas.labels(namespace, service, role).set(plan[f"{role}Replicas"])
            if isinstance(plan.get(f"{role}BaseClockMHz"), int):
                self.planned_base_clock.labels(namespace, service, role).set(plan[f"{role}BaseClockMHz"])
        saving = (status.get("energy") or {}).get("estimatedSavingPercent")
        if isinstance(saving, (int, float)):
            self.estimated_saving.labels(namespace, service).set(saving / 100.0)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """/metrics on ``port`` in a daemon thread."""
        prometheus_client.start_http_server(port, addr=address, registry=self.registry)

    def forget(self, namespace: str, service: str) -> None:
        """Drop a deleted service's series."""
        for metric in (self.plan_duration, self.plan_changes, self.prometheus_errors, self.estimated_saving):
            with contextlib.suppress(KeyError):
                metric.remove(namespace, service)
        for role in ("prefill", "decode"):
            for gauge in (self.planned_replicas, self.planned_base_clock):
                with contextlib.suppress(KeyError):
                    gauge.remove(namespace, service, role)
        for outcome in ("planned", "unavailable", "failed", "skipped"):
            with contextlib.suppress(KeyError):
                self.plan_passes.remove(namespace, service, outcome)
