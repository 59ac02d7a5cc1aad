"""Drift correction and status refresh, outside kopf's timers.

kopf timers put a finalizer on every object, which costs a write and a watch round trip per
create and makes deletion wait for a live operator. Instead, an event handler keeps the
latest body of every service here; a change of one of its Deployments (its pods turning ready,
a deletion by hand) reconciles that service at once, and a thread reconciles them all every
interval, for the children not watched (Services) and whatever a watch missed.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any

from joulescale.api import API_VERSION, KIND
from joulescale_operator.kube import Cluster, ClusterError
from joulescale_operator.reconcile import Clock, Events, Reconciler
from joulescale_operator.render import ChildRef

logger = logging.getLogger(__name__)

Key = tuple[str, str]


class Resync:
    """The services seen on the watch, and the loop that reconciles them periodically."""

    def __init__(
        self, cluster: Cluster, events_for: Callable[[dict[str, Any]], Events], clock: Clock
    ) -> None:
        self._cluster = cluster
        self._events_for = events_for
        self._clock = clock
        self._services: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Track a watch event: remember the newest body, forget deleted services."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            if event_type == "DELETED" or meta.get("deletionTimestamp"):
                self._services.pop(key, None)
            else:
                self._services[key] = copy.deepcopy(body)

    def known(self) -> list[Key]:
        with self._lock:
            return sorted(self._services)

    def resync_once(self) -> int:
        """Reconcile every known service once; returns how many status patches were written."""
        with self._lock:
            bodies = list(self._services.values())
        return sum(self._reconcile(body) for body in bodies)

    def child_changed(self, key: Key) -> bool:
        """Reconcile the service that owns a changed child; False when the service is not known
        (not seen yet, or deleted: its children go with it)."""
        with self._lock:
            body = self._services.get(key)
        if body is None:
            return False
        self._reconcile(body)
        return True

    def _reconcile(self, body: dict[str, Any]) -> bool:
        """True when a status patch was written; a cluster error is logged and left to the next pass."""
        meta = body["metadata"]
        try:
            patch = Reconciler(self._cluster, self._events_for(body), self._clock).reconcile(body)
            if not patch:
                return False
            self._cluster.patch_status(ChildRef(API_VERSION, KIND, meta["namespace"], meta["name"]), patch)
            return True
        except ClusterError as error:
            logger.warning(
                "reconcile of %s/%s failed, retrying next interval: %s", meta["namespace"], meta["name"], error
            )
            return False

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Resync every interval_s until stop is set (the wait is on the event, not a sleep)."""
        while not stop.wait(interval_s):
            self.resync_once()
