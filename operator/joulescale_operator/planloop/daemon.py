"""The planner loop's shell: one thread, the one owner of planning passes.

Every TICK_S it plans the services (those the resync tracks from the watch) whose
``spec.energy.planner.intervalSeconds`` has passed since their last pass. A pass reads the
service fresh from the apiserver, plans once, and writes the status with the resourceVersion it
read as a precondition: on a conflict it reads again and recomputes only the status (the
planner is not asked twice), up to CONFLICT_RETRIES times; a status that would not change is not
written. The write is a server-side apply of the planner's part of the status only, under its
own field manager (status_owners.py): it never carries the reconciler's conditions or fields.
A new plan is applied at once from the body just written (``apply``): autoscaled roles get the
planned replicas within their bounds, under the planner's own field manager, the one owner of
those counts (planned_replicas.py), and the agents read the base clocks from status.plan of the
service they watch; no pod restarts. A plan not applied yet (the apply failed, or this process
has not applied the service's plan since it started) is applied again at the next pass.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from joulescale.api import API_VERSION, KIND
from joulescale_operator.kube import ClusterError, Conflict
from joulescale_operator.locks import Key
from joulescale_operator.planloop.loop import PlanPass
from joulescale_operator.planloop.opmetrics import OperatorMetrics
from joulescale_operator.reconcile import Events
from joulescale_operator.render import ChildRef
from joulescale_operator.status_owners import PLANNER, PLANNER_MANAGER_SUFFIX, remove_leftovers

logger = logging.getLogger(__name__)

TICK_S = 1.0
CONFLICT_RETRIES = 5


class StatusCluster(Protocol):
    def get(self, ref: ChildRef) -> dict[str, Any] | None: ...

    def apply_status(
        self, ref: ChildRef, status: dict[str, Any], *, manager_suffix: str = "", resource_version: str | None = None
    ) -> dict[str, Any]: ...

    def patch_status_json(self, ref: ChildRef, operations: list[dict[str, Any]]) -> None: ...


class PlannerLoop:
    def __init__(
        self,
        cluster: StatusCluster,
        plan_pass: PlanPass,
        known: Callable[[], list[Key]],
        apply: Callable[[Key, dict[str, Any]], None],
        events_for: Callable[[dict[str, Any]], Events],
        clock: Callable[[], datetime],
        metrics: OperatorMetrics,
    ) -> None:
        self._cluster = cluster
        self._pass = plan_pass
        self._known = known
        self._apply = apply
        self._events_for = events_for
        self._clock = clock
        self.metrics = metrics
        self._due: dict[Key, float] = {}
        self._applied: set[Key] = set()
        """Services whose stored plan this loop has applied."""
        self._thread: threading.Thread | None = None

    def run_due(self, monotonic_s: float) -> int:
        """Plan every known service that is due; returns how many were planned."""
        known = set(self._known())
        for gone in set(self._due) - known:
            self._due.pop(gone, None)
            self._applied.discard(gone)
            self.metrics.forget(*gone)
        planned = 0
        for key in sorted(known):
            if self._due.get(key, 0.0) > monotonic_s:
                continue
            interval = self.plan_service(key)
            self._due[key] = monotonic_s + (interval if interval is not None else 60.0)
            planned += 1
        return planned

    def plan_service(self, key: Key) -> float | None:
        """One pass of one service; returns its interval (None when it could not be read)."""
        namespace, name = key
        ref = ChildRef(API_VERSION, KIND, namespace, name)
        started = time.perf_counter()
        interval: float | None = None
        try:
            body = self._cluster.get(ref)
            if body is None:
                return None
            interval = float(_interval(body))
            now = self._clock()
            planning = self._pass.decide(body, now)
            for _ in range(CONFLICT_RETRIES):
                result = self._pass.status_for(planning, body, now)
                stored = body
                if result.status_patch:
                    try:
                        stored = self._cluster.apply_status(
                            ref,
                            result.status_apply,
                            manager_suffix=PLANNER_MANAGER_SUFFIX,
                            resource_version=str(body["metadata"].get("resourceVersion", "")),
                        )
                    except Conflict:
                        fresh = self._cluster.get(ref)
                        if fresh is None:
                            return None
                        body = fresh
                        continue
                    remove_leftovers(self._cluster, ref, stored, result.status_apply, PLANNER)
                self._record(key, body, result.outcome, result.events, result.plan_changed)
                self.metrics.record_status(namespace, name, stored.get("status") or {})
                if result.plan_changed or key not in self._applied:
                    self._applied.discard(key)
                    self._apply(key, stored)
                    self._applied.add(key)
                break
            else:
                logger.warning("plan of %s/%s: status kept conflicting; next interval", namespace, name)
        except ClusterError as error:
            logger.warning("plan of %s/%s failed, retrying next interval: %s", namespace, name, error)
        except Exception:  # one service's failure never stops the loop
            logger.exception("plan of %s/%s failed, retrying next interval", namespace, name)
        finally:
            self.metrics.plan_duration.labels(namespace, name).observe(time.perf_counter() - started)
        return interval

    def _record(
        self, key: Key, body: dict[str, Any], outcome: str, events: list[tuple[str, str, str]], changed: bool
    ) -> None:
        self.metrics.plan_passes.labels(*key, outcome).inc()
        if outcome == "unavailable":
            self.metrics.prometheus_errors.labels(*key).inc()
        if changed:
            self.metrics.plan_changes.labels(*key).inc()
        if events:
            sink = self._events_for(body)
            for kind, reason, message in events:
                try:
                    (sink.warning if kind == "Warning" else sink.normal)(reason, message)
                except Exception:  # an event is worth a log line, never the pass (the status is written)
                    logger.exception("plan of %s/%s: event %s not posted", *key, reason)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_S):
            try:
                self.run_due(time.monotonic())
            except Exception:
                logger.exception("a planning round failed; the next one runs in %s s", TICK_S)

    def start(self, stop: threading.Event) -> None:
        """Run in a daemon thread that inherits the caller's context: start it from a context
        where kopf's event poster is set (an event handler's, not the startup handler's)."""
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self.run, stop), name="planner", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()


def _interval(body: dict[str, Any]) -> int:
    planner = ((body.get("spec") or {}).get("energy") or {}).get("planner") or {}
    value = planner.get("intervalSeconds", 300)
    return int(value) if isinstance(value, int) and value >= 1 else 300
