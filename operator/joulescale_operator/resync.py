"""Drift correction and status refresh, outside kopf's timers.

kopf timers put a finalizer on every object, which costs a write and a watch round trip per
create and makes deletion wait for a live operator. Instead, an event handler keeps the
latest body of every service here; a change of one of its Deployments (its pods turning ready,
a deletion by hand) reconciles that service at once, and a thread reconciles them all every
interval, for the children not watched (Services) and whatever a watch missed.

Errors stay with their service: whatever one reconcile raises is logged and the pass goes on
to the next service, and the loop itself outlives any pass (`alive` says whether it runs, for
the liveness probe). Reconciles of one service are serialized with kopf's handlers through
the shared ServiceLocks, and always use the newest body seen on the watch.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import threading
from collections.abc import Callable
from typing import Any

from joulescale.api import API_VERSION, KIND
from joulescale.profiles import ProfileCatalog
from joulescale_operator.kube import Cluster, ClusterError
from joulescale_operator.locks import Key, ServiceLocks
from joulescale_operator.reconcile import Clock, Events, Reconciler, Renderer
from joulescale_operator.render import ChildRef, render_children
from joulescale_operator.status_owners import RECONCILER, reconciler_status, remove_leftovers, with_changes

logger = logging.getLogger(__name__)


class Resync:
    """The services seen on the watch, and the loop that reconciles them periodically."""

    def __init__(
        self,
        cluster: Cluster,
        events_for: Callable[[dict[str, Any]], Events],
        clock: Clock,
        *,
        locks: ServiceLocks | None = None,
        render: Renderer = render_children,
        profiles: ProfileCatalog | None = None,
    ) -> None:
        self._cluster = cluster
        self._profiles = profiles
        self._events_for = events_for
        self._clock = clock
        self._render = render
        self.locks = locks if locks is not None else ServiceLocks()
        """Shared with kopf's handlers: one reconcile of a service at a time."""
        self._services: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Track a watch event: remember the newest body, forget deleted services. A body whose
        spec is older than the one known (a lower generation of the same object: the planner
        hands over the body it wrote, which a watch event may have overtaken) is not taken: the
        resync would roll the children back to that spec until the next event."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            if event_type == "DELETED" or meta.get("deletionTimestamp"):
                self._services.pop(key, None)
            elif not _older_spec(body, self._services.get(key)):
                self._services[key] = copy.deepcopy(body)

    def known(self) -> list[Key]:
        with self._lock:
            return sorted(self._services)

    def resync_once(self) -> int:
        """Reconcile every known service once; returns how many status patches were written."""
        return sum(self._reconcile(key) for key in self.known())

    def child_changed(self, key: Key) -> bool:
        """Reconcile the service that owns a changed child; False when the service is not known
        (not seen yet, or deleted: its children go with it)."""
        with self._lock:
            known = key in self._services
        if known:
            self._reconcile(key)
        return known

    def _reconcile(self, key: Key) -> bool:
        """True when a status patch was written. Any error is logged and left to the next pass:
        one service's failure never reaches the others."""
        namespace, name = key
        try:
            with self.locks.hold(key):
                with self._lock:
                    body = self._services.get(key)  # the newest body, read under the service's lock
                if body is None:
                    return False
                reconciler = Reconciler(
                    self._cluster, self._events_for(body), self._clock, self._render, self._profiles
                )
                changes = reconciler.reconcile(body)
                if not changes:
                    return False
                write_status(self._cluster, body, changes)
                return True
        except ClusterError as error:
            logger.warning("reconcile of %s/%s failed, retrying next interval: %s", namespace, name, error)
        except Exception:
            logger.exception("reconcile of %s/%s failed, retrying next interval", namespace, name)
        return False

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Resync every interval_s until stop is set (the wait is on the event, not a sleep)."""
        while not stop.wait(interval_s):
            try:
                self.resync_once()
            except Exception:  # resync_once already keeps errors per service; never die
                logger.exception("a resync pass failed; the next one runs in %s s", interval_s)

    def start(self, interval_s: float, stop: threading.Event) -> None:
        """Run the loop in a daemon thread, which inherits the caller's context (so that
        kopf.warn() can post events from it)."""
        self._stop = stop
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self.run, interval_s, stop), name="resync", daemon=True
        )
        self._thread.start()

    def check_alive(self) -> None:
        """Raise ResyncDied when the loop was started, is not being stopped, and is gone: the
        liveness probe calls this, so a dead loop restarts the operator instead of hiding."""
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            raise ResyncDied("the resync thread is not running: drift is no longer corrected")


def write_status(cluster: Cluster, body: dict[str, Any], changes: dict[str, Any]) -> None:
    """Apply the reconciler's part of the status with its changes (the one write path of the
    reconciler's status: kopf's handlers and the resync)."""
    meta = body.get("metadata", {})
    ref = ChildRef(API_VERSION, KIND, str(meta.get("namespace", "")), str(meta.get("name", "")))
    status = body.get("status")
    sent = with_changes(reconciler_status(status if isinstance(status, dict) else None), changes)
    remove_leftovers(cluster, ref, cluster.apply_status(ref, sent), sent, RECONCILER)


class ResyncDied(Exception):
    """The drift-correction loop is gone."""


def _older_spec(body: dict[str, Any], known: dict[str, Any] | None) -> bool:
    """Whether ``body`` is the same object as ``known`` at a lower generation (the apiserver
    raises metadata.generation with every change of the spec)."""
    if known is None:
        return False
    new, old = body.get("metadata", {}), known.get("metadata", {})
    if new.get("uid") != old.get("uid"):
        return False
    generation, known_generation = new.get("generation"), old.get("generation")
    return isinstance(generation, int) and isinstance(known_generation, int) and generation < known_generation
