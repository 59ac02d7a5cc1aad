"""Prometheus metrics of the agent (names as docs/architecture.md says: ``joulescale_`` prefix, units in
names) and the HTTP endpoints /metrics, /healthz and /readyz.

Every per-instance series carries ``namespace``, ``service``, ``pod`` and ``role``: what a
dashboard groups by and joins with the engines' series on (docs/observability.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import prometheus_client
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# prometheus_client adds a ``_created`` series (a timestamp) to every counter and histogram: a
# series per label set that no dashboard or rule reads and Prometheus would store for nothing.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

POD_LABELS = ("namespace", "service", "pod", "role")
"""In the order of ``EngineInstance.labels``."""
GPU_LABELS = ("gpu", *POD_LABELS)


class _EnergyCollector(Collector):
    """Exposes the GPUs' own energy counters as counters (they are read, not incremented)."""

    def __init__(self) -> None:
        self.energy_j: dict[tuple[str, ...], float] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "joulescale_gpu_energy_joules",
            "GPU energy counter (since driver load), in joules.",
            labels=GPU_LABELS,
        )
        for labels, value in self.energy_j.items():
            family.add_metric(list(labels), value)
        yield family


class _StateFileCollector(Collector):
    """Health of the state file, read from it at scrape time (see safety/statefile)."""

    def __init__(self, failures: Callable[[], int], ok: Callable[[], bool]) -> None:
        self._failures = failures
        self._ok = ok

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily(
            "joulescale_state_file_write_failures",
            "Writes of the locked-GPU state file that failed (full disk, EIO, permission).",
            value=self._failures(),
        )
        yield GaugeMetricFamily(
            "joulescale_state_file_ok",
            "1 when the state file on disk names every GPU the agent may have locked.",
            value=1 if self._ok() else 0,
        )


INSTANCE_STATES = ("controlled", "policy_error", "crash_backoff")
"""States of a discovered instance in the supervisor (joulescale_engine_instances_by_state)."""


class AgentMetrics:
    """All metrics of one agent, in a registry of their own (tests create several agents)."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.target_clock = prometheus_client.Gauge(
            "joulescale_gpu_target_sm_clock_mhz",
            "SM clock the agent locked (0: unlocked).",
            GPU_LABELS,
            registry=r,
        )
        self.actual_clock = prometheus_client.Gauge(
            "joulescale_gpu_sm_clock_mhz", "SM clock read back from the GPU.", GPU_LABELS, registry=r
        )
        self.power = prometheus_client.Gauge(
            "joulescale_gpu_power_watts", "GPU power.", GPU_LABELS, registry=r
        )
        self.throttle = prometheus_client.Gauge(
            "joulescale_gpu_throttle_reasons", "NVML clocks-event reasons bitmask.", GPU_LABELS, registry=r
        )
        self.readback_mismatches = prometheus_client.Counter(
            "joulescale_gpu_clock_readback_mismatches",
            "Read-backs that did not match the locked clock after the settle time.",
            GPU_LABELS,
            registry=r,
        )
        self.clock_changes = prometheus_client.Counter(
            "joulescale_clock_changes", "Clock changes applied to an engine instance.", POD_LABELS, registry=r
        )
        self.decisions = prometheus_client.Counter(
            "joulescale_decisions", "Policy decisions by reason.", (*POD_LABELS, "reason"), registry=r
        )
        self.decision_time = prometheus_client.Histogram(
            "joulescale_decision_seconds",
            "Time from scraped page to applied decision.",
            POD_LABELS,
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
            registry=r,
        )
        self.failsafe = prometheus_client.Gauge(
            "joulescale_failsafe",
            "1 while the instance's locks are released for stale metrics.",
            POD_LABELS,
            registry=r,
        )
        self.scrape_errors = prometheus_client.Counter(
            "joulescale_scrape_errors",
            "Failed metric scrapes by kind: unavailable, format, limit (size, label or time budget).",
            (*POD_LABELS, "kind"),
            registry=r,
        )
        self.lines_skipped = prometheus_client.Counter(
            "joulescale_metrics_lines_skipped",
            "Lines of engine /metrics pages skipped for exceeding the parse limits.",
            POD_LABELS,
            registry=r,
        )
        self.parse_time = prometheus_client.Histogram(
            "joulescale_metrics_parse_seconds",
            "Time to read one engine /metrics page (decode, parse, adapt), off the event loop.",
            POD_LABELS,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.readback_releases = prometheus_client.Counter(
            "joulescale_clock_readback_releases",
            "Groups released because a read-back still disagreed with the lock after the retries.",
            POD_LABELS,
            registry=r,
        )
        self.relock_backoff = prometheus_client.Gauge(
            "joulescale_relock_backoff_seconds",
            "Back-off after a fail-safe release before a clock is locked again (0: none pending).",
            POD_LABELS,
            registry=r,
        )
        self.read_only = prometheus_client.Gauge(
            "joulescale_read_only",
            "1 when the agent cannot change some clock: no permission, or a read-only GPU.",
            registry=r,
        )
        self.gpu_read_only = prometheus_client.Gauge(
            "joulescale_gpu_read_only",
            "1 for a GPU that cannot lock clocks (MIG-partitioned, NotSupported).",
            ("gpu",),
            registry=r,
        )
        self.instances_by_state = prometheus_client.Gauge(
            "joulescale_engine_instances_by_state",
            "Discovered engine instances by supervisor state.",
            ("state",),
            registry=r,
        )
        for state in INSTANCE_STATES:
            self.instances_by_state.labels(state).set(0)
        self.policy_errors = prometheus_client.Counter(
            "joulescale_instance_policy_errors",
            "Policies that could not be built for an instance (its GPUs stay at default clocks).",
            POD_LABELS,
            registry=r,
        )
        self.instance_restarts = prometheus_client.Counter(
            "joulescale_instance_restarts",
            "Restarts of an instance loop after it crashed.",
            POD_LABELS,
            registry=r,
        )
        self.view = prometheus_client.Gauge(
            "joulescale_agent_view",
            "1 for the view the instance's policy observes through (metrics: /metrics; rich: the engine hook).",
            (*POD_LABELS, "view"),
            registry=r,
        )
        self.hook_messages = prometheus_client.Counter(
            "joulescale_hook_messages",
            "Datagrams read from the instance's engine hook socket, by kind (scheduled, done, invalid, "
            "other_source: a second scheduler of the pod, ignored).",
            (*POD_LABELS, "kind"),
            registry=r,
        )
        self.instances = prometheus_client.Gauge(
            "joulescale_engine_instances", "Engine instances the agent controls.", registry=r
        )
        self._energy = _EnergyCollector()
        r.register(self._energy)

    def watch_state_file(self, failures: Callable[[], int], ok: Callable[[], bool]) -> None:
        self.registry.register(_StateFileCollector(failures, ok))

    def set_energy(self, labels: tuple[str, ...], energy_j: float) -> None:
        self._energy.energy_j[labels] = energy_j

    def forget_gpu(self, labels: tuple[str, ...]) -> None:
        self._energy.energy_j.pop(labels, None)
        for gauge in (self.target_clock, self.actual_clock, self.power, self.throttle):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class Health:
    """Liveness and readiness, set by the agent.

    ``/readyz`` is 503 while starting, shutting down, or while any instance loop waits to be
    restarted after a crash (``crashing``); instances whose policy cannot be built are listed
    (``policy_errors``) but do not make the agent unready: that is one tenant's spec, not the
    agent's health.
    """

    def __init__(self) -> None:
        self.ready = False
        self.live = True
        self.detail = "starting"
        self.crashing: dict[str, str] = {}
        self.policy_errors: dict[str, str] = {}

    def status(self) -> tuple[bool, str]:
        ready = self.ready and not self.crashing
        lines = [self.detail]
        lines += [f"crashing {key}: {why}" for key, why in sorted(self.crashing.items())]
        lines += [f"policy error {key}: {why}" for key, why in sorted(self.policy_errors.items())]
        return ready, "\n".join(lines) + "\n"


def make_app(metrics: AgentMetrics, health: Health) -> web.Application:
    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(status=200 if health.live else 503, text="ok\n" if health.live else "dead\n")

    async def readyz(_: web.Request) -> web.Response:
        ready, text = health.status()
        return web.Response(status=200 if ready else 503, text=text)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
