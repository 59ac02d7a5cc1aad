"""The kopf shell: thin handlers that read, call the Reconciler, and apply its part of the status.

Handlers live in a registry built per operator instance, so that tests and the CLI can run
operators with their own settings side by side. Errors are mapped here, once: a cluster
outage or conflict becomes kopf.TemporaryError with a delay.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import kopf
from kubernetes.client import ApiClient

from joulescale.api import GROUP, PLURAL, VERSION
from joulescale.profiles import ProfileCatalog, catalog_from_dir
from joulescale_operator.connection import connection_info, load_configuration
from joulescale_operator.identity import MANAGED_BY_LABEL, MANAGER, SERVICE_LABEL
from joulescale_operator.kube import ClusterError, ClusterUnavailable, KubeCluster
from joulescale_operator.locks import Key
from joulescale_operator.own_writes import OwnWrites
from joulescale_operator.planloop.daemon import PlannerLoop
from joulescale_operator.planloop.loop import PlanPass
from joulescale_operator.planloop.opmetrics import OperatorMetrics
from joulescale_operator.planloop.planner import CorePlanner
from joulescale_operator.planloop.prometheus import PrometheusSource
from joulescale_operator.planned_replicas import apply_stored_plan
from joulescale_operator.reconcile import Reconciler
from joulescale_operator.render import ChildRef, render_children
from joulescale_operator.resync import Resync, write_status
from joulescale_operator.settings import OperatorSettings

ANNOTATION_PREFIX = "joulescale.io"
logger = logging.getLogger(__name__)
REPORTING_COMPONENT = f"{GROUP}/{MANAGER}"
CHILD_EVENT_SETTLE_S = 0.2
"""How long a child's event waits before it is checked against the operator's own applies."""


class KopfEvents:
    """Events through kopf's poster, attached to the service."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def warning(self, reason: str, message: str) -> None:
        kopf.warn(kopf.Body(cast(kopf.RawBody, self._body)), reason=reason, message=message[:1000])

    def normal(self, reason: str, message: str) -> None:
        # kopf.event, not kopf.info: info obeys posting.level, which _tune keeps at WARNING so
        # that kopf's own log lines do not become events.
        body = kopf.Body(cast(kopf.RawBody, self._body))
        kopf.event(body, type="Normal", reason=reason, message=message[:1000])


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """A registry holding every handler of the operator, configured by settings."""
    registry = kopf.OperatorRegistry()
    configuration = load_configuration(settings.kubeconfig)
    configuration.connection_pool_maxsize = max(settings.max_workers, 4)
    kube = KubeCluster(ApiClient(configuration), settings.field_manager)
    cluster = OwnWrites(kube)
    profiles = load_profiles(settings.profiles_dir)
    render = functools.partial(render_children, hook=settings.hook)
    resync = Resync(cluster, KopfEvents, utc_now, render=render, profiles=profiles)
    stop_resync = threading.Event()
    ours = settings  # kopf passes its own `settings` to activity handlers
    metrics = OperatorMetrics()
    planner = planner_loop(settings, kube, cluster, resync, profiles, metrics)
    planner_started = threading.Event()

    @kopf.on.startup(registry=registry)
    def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        _tune(settings, max_workers=ours.max_workers)
        try:
            kube.ping()
        except ClusterError as error:
            raise kopf.TemporaryError(str(error), delay=ours.retry_delay_s) from error
        resync.start(ours.resync_interval_s, stop_resync)
        if ours.metrics_port is not None:
            metrics.serve(ours.metrics_port)

    # A failing probe turns kopf's liveness endpoint red (HTTP 500) at once (errors=PERMANENT).
    @kopf.on.probe(id="resync", errors=kopf.ErrorsMode.PERMANENT, registry=registry)
    def resync_alive(**_: Any) -> bool:
        resync.check_alive()
        return True

    @kopf.on.cleanup(registry=registry)
    def stop(**_: Any) -> None:
        stop_resync.set()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(load_configuration(settings.kubeconfig))

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def track(body: kopf.Body, **kwargs: Any) -> None:
        """Async on purpose: it runs on the event loop, without a hop through the thread pool."""
        resync.observe(kwargs.get("type"), _plain(body))
        if planner is not None and not planner_started.is_set():
            # Started here, not at startup: the thread inherits this context, in which kopf's
            # event poster is set (the startup handler's context lacks it).
            planner_started.set()
            planner.start(stop_resync)

    # Owned Deployments (kubebuilder's Owns()): readiness and drift reach the service without
    # waiting for the resync. Services are left to the resync: they carry no status, and a second
    # cluster-wide watch slowed bench/reconcile.py. Events of the operator's own applies are
    # skipped (own_writes.py); a no-op apply does not bump resourceVersion, so no event follows.
    @kopf.on.event("apps", "v1", "deployments", labels={MANAGED_BY_LABEL: MANAGER}, registry=registry)
    async def child_changed(body: kopf.Body, **kwargs: Any) -> None:
        meta = body.metadata
        service = meta.labels.get(SERVICE_LABEL)
        if not service or not meta.namespace or kwargs.get("type") is None:
            return  # type None: kopf's initial listing; the resume handler reconciles every service
        ref = ChildRef(str(body.get("apiVersion", "")), str(body.get("kind", "")), meta.namespace, str(meta.name))
        if kwargs.get("type") == "DELETED":
            cluster.forget(ref)
        else:
            # The watch may deliver the event of an apply before the apply's answer is read.
            await asyncio.sleep(CHILD_EVENT_SETTLE_S)
            if cluster.is_own(ref, meta.get("resourceVersion")):
                return
        # to_thread carries kopf's context along, so kopf.warn() still posts events from there.
        await asyncio.to_thread(resync.child_changed, (meta.namespace, service))

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    def reconcile_service(body: kopf.Body, **_: Any) -> None:
        """The status is applied here, not through kopf's patch: a merge patch would send the
        conditions list whole, and this body may be older than the planner's last write."""
        plain = _plain(body)
        service_key = (str(body.metadata.namespace), str(body.metadata.name))
        try:
            with resync.locks.hold(service_key):  # never at the same time as the resync of this service
                changes = Reconciler(cluster, KopfEvents(plain), utc_now, render, profiles).reconcile(plain)
                if changes:
                    write_status(cluster, plain, changes)
        except ClusterUnavailable as error:
            raise kopf.TemporaryError(str(error), delay=ours.retry_delay_s) from error

    return registry


def planner_loop(
    settings: OperatorSettings,
    kube: KubeCluster,
    cluster: OwnWrites,
    resync: Resync,
    profiles: ProfileCatalog,
    metrics: OperatorMetrics,
) -> PlannerLoop | None:
    """The planner loop when a Prometheus is configured. A plan is applied by the planner's own
    field manager (the autoscaled roles' replicas, planned_replicas.py), then the service is
    reconciled on the body the plan was written to (its status, and the rest of its children)."""
    if settings.prometheus_url is None:
        return None
    core = (
        CorePlanner(profiles, settings.planner_cache_dir)
        if settings.planner_startup_s is None
        else CorePlanner(profiles, settings.planner_cache_dir, settings.planner_startup_s)
    )
    plan_pass = PlanPass(PrometheusSource(settings.prometheus_url), core, profiles)

    return PlannerLoop(kube, plan_pass, resync.known, plan_applier(cluster, resync), KopfEvents, utc_now, metrics)


def plan_applier(cluster: OwnWrites, resync: Resync) -> Callable[[Key, dict[str, Any]], None]:
    """How the planner loop applies the plan of the body it has just written: the autoscaled
    roles' replicas under the planner's field manager (planned_replicas.py), never at the same
    time as a reconcile of that service; then a reconcile on that body, for the status."""

    def apply(key: Key, stored: dict[str, Any]) -> None:
        try:
            with resync.locks.hold(key):
                apply_stored_plan(cluster, stored)
        finally:
            resync.observe("MODIFIED", stored)
            resync.child_changed(key)

    return apply


def load_profiles(folder: Path | None) -> ProfileCatalog:
    """The shipped profiles plus the directory's; a bad file is logged and skipped."""
    catalog, problems = catalog_from_dir(folder)
    for problem in problems:
        logger.warning("--profiles-dir: %s", problem[:1000])
    return catalog


def _tune(settings: kopf.OperatorSettings, *, max_workers: int) -> None:
    """kopf's settings in one place: state in annotations (the status schema is ours), quiet events."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    # Events say who posted them (the FROM column of kubectl describe), as the agent's do.
    settings.posting.reporting_component = REPORTING_COMPONENT
    settings.posting.reporting_instance = socket.gethostname()  # the pod's name in a cluster
    settings.posting.event_name_prefix = f"{MANAGER}-"
    settings.execution.max_workers = max_workers
    settings.networking.request_timeout = 60.0
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


def _plain(body: kopf.Body) -> dict[str, Any]:
    """The raw object behind kopf's read-only view."""
    return {key: body[key] for key in body}
