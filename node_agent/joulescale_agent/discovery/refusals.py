"""Pods the agent refuses to control, made visible: one log line per pod and reason, the
``joulescale_instances_refused`` gauge, and a Warning Event on the pod (best effort)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from joulescale_agent.discovery.desired import Refusal

log = logging.getLogger(__name__)

REFUSED_METRIC = "joulescale_instances_refused"
QUIET_REASONS = frozenset({"gpus-unknown", "no-pod-ip"})
"""Usual for a few seconds while a pod starts: logged, but no Event for them."""

EventSink = Callable[[str, Refusal], None]
"""(namespace/pod, refusal) -> records a Kubernetes Event; must not block the event loop."""


class RefusalReport(Collector):
    def __init__(self, events: EventSink | None = None) -> None:
        self._current: dict[str, Refusal] = {}
        self._events = events

    def update(self, refused: Mapping[str, Refusal]) -> None:
        """Reports what is newly refused (or refused for a new reason); forgets the rest."""
        for key, refusal in sorted(refused.items()):
            before = self._current.get(key)
            if before is not None and before.reason == refusal.reason:
                continue
            log.warning("%s: not controlling it (%s): %s", key, refusal.reason, refusal.detail)
            if self._events is not None and refusal.reason not in QUIET_REASONS:
                self._events(key, refusal)
        self._current = dict(refused)

    @property
    def current(self) -> Mapping[str, Refusal]:
        return self._current

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            REFUSED_METRIC,
            "1 for each engine pod of this node the agent does not control, by reason.",
            labels=("namespace", "pod", "reason"),
        )
        for key, refusal in sorted(self._current.items()):
            namespace, _, pod = key.partition("/")
            family.add_metric([namespace, pod, refusal.reason], 1.0)
        yield family
