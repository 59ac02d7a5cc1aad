"""Kubernetes discovery: watches this node's engine pods, the services, and the ReplicaSets and
Deployments between them (all read-only), and asks the GPU source which GPUs the pods hold.

The kubernetes client is synchronous, so each watch runs in a daemon thread that updates a
snapshot and wakes the event loop; ``updates`` recomputes the desired set after each wake-up
(coalescing bursts). Watches relist after errors and on 410 Gone, with a short back-off. The GPU
source (a kubelet gRPC call) is read once per recompute in a thread of its own, within
``gpu_read_budget_s``: nothing here blocks the event loop. Pods refused for a reason that
passes by itself (GPUs not yet known) are looked at again after ``recheck_s``. Refusals go to
the ``EventRecorder`` given (the agent's one event writer), as Warning Events on the pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes import watch as _watch
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from joulescale.api import GROUP, PLURAL, VERSION, EnergyAwareLLMService
from joulescale.profiles import ProfileCatalog
from joulescale_agent.discovery.base import Desired
from joulescale_agent.discovery.desired import ProfileChooser, Refusal, desired_instances, parse_service
from joulescale_agent.discovery.gpus import GpuAssignments, GpuSource, KubeletAssignments
from joulescale_agent.discovery.ownership import ROLE_LABEL
from joulescale_agent.discovery.profiles import profile_chooser
from joulescale_agent.discovery.refusals import RefusalReport
from joulescale_agent.events import NOT_CONTROLLED, EventRecorder, PodRef

log = logging.getLogger(__name__)

# Parts of the kubernetes client are untyped; they are used through Any on purpose.
watch: Any = _watch
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
Lister = Callable[..., Any]
STALE_GPUS_OK_S = 10.0


class _Mirror:
    """A thread-safe copy of one watched collection, keyed by namespace/name."""

    def __init__(self, notify: Callable[[], None]) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.synced = False
        self.lock = threading.Lock()
        self._notify = notify

    def replace(self, items: list[dict[str, Any]]) -> None:
        with self.lock:
            self.items = {_key(i): i for i in items}
            self.synced = True
        self._notify()

    def apply(self, kind: str, item: dict[str, Any]) -> None:
        with self.lock:
            if kind == "DELETED":
                self.items.pop(_key(item), None)
            else:
                self.items[_key(item)] = item
        self._notify()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return dict(self.items)


def _key(item: dict[str, Any]) -> str:
    meta = item.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class KubeDiscovery:
    def __init__(
        self,
        api: client.ApiClient,
        node_name: str,
        *,
        gpus: GpuSource,
        choose_profile: ProfileChooser | None = None,
        profiles: ProfileCatalog | None = None,
        registry: CollectorRegistry | None = None,
        events: EventRecorder | None = None,
        watch_timeout_s: int = 30,
        retry_s: float = 1.0,
        gpu_read_budget_s: float = 2.0,
        recheck_s: float = 2.0,
    ) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._apps = client.AppsV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._node = node_name
        self._gpus = gpus
        self._choose_profile = choose_profile
        self._profiles = profiles
        self._watch_timeout_s = watch_timeout_s
        self._retry_s = retry_s
        self._gpu_read_budget_s = gpu_read_budget_s
        self._recheck_s = recheck_s
        self._stop = threading.Event()
        # One thread for the GPU source: a slow kubelet never piles up calls.
        self._gpu_reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu-source")
        self._events = events
        self._pods_now: dict[str, dict[str, Any]] = {}
        self._good_gpus: tuple[GpuAssignments, float] | None = None
        self.gpus_failing = False
        """The last read of the GPU source failed (its last good answer may still serve)."""
        self.refusals = RefusalReport(self._post_event if events is not None else None)
        if registry is not None:
            registry.register(self.refusals)

    def _node_gpu_product(self) -> str:
        try:
            node = self._core.read_node(self._node)
        except ApiException as error:
            log.warning(
                "cannot read node %s (%s); without its %s label no pod gets a profile",
                self._node,
                error.reason,
                GPU_PRODUCT_LABEL,
            )
            return ""
        labels = node.metadata.labels if node.metadata is not None else None
        return str((labels or {}).get(GPU_PRODUCT_LABEL, ""))

    def _pods(self, **kw: Any) -> Any:
        return self._core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self._node}", label_selector=ROLE_LABEL, **kw
        )

    def _services(self, **kw: Any) -> Any:
        return self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw)

    def _replicasets(self, **kw: Any) -> Any:
        # The operator's ReplicaSets carry the role label (from the pod template).
        return self._apps.list_replica_set_for_all_namespaces(label_selector=ROLE_LABEL, **kw)

    def _deployments(self, **kw: Any) -> Any:
        return self._apps.list_deployment_for_all_namespaces(label_selector=ROLE_LABEL, **kw)

    def _as_dict(self, obj: Any) -> dict[str, Any]:
        api: Any = self._api
        return obj if isinstance(obj, dict) else dict(api.sanitize_for_serialization(obj))

    def _run_watch(self, lister: Lister, mirror: _Mirror, what: str) -> None:
        while not self._stop.is_set():
            try:
                listing = self._as_dict(lister())
                mirror.replace([self._as_dict(i) for i in listing.get("items", [])])
                version = listing.get("metadata", {}).get("resourceVersion")
                stream: Iterator[dict[str, Any]] = watch.Watch().stream(
                    lister, resource_version=version, timeout_seconds=self._watch_timeout_s
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    if event["type"] == "ERROR":
                        break  # typically 410 Gone: relist
                    mirror.apply(event["type"], self._as_dict(event["object"]))
            except Exception as error:  # the watch must survive apiserver restarts and network blips
                log.warning("%s watch failed (%s); relisting in %.1f s", what, error, self._retry_s)
                self._stop.wait(self._retry_s)

    def _post_event(self, key: str, refusal: Refusal) -> None:
        meta = self._pods_now.get(key, {}).get("metadata", {})
        namespace, name, uid = meta.get("namespace"), meta.get("name"), meta.get("uid")
        if self._events is None or not isinstance(namespace, str) or not isinstance(name, str):
            return
        message = f"the JouleScale agent on {self._node} does not control this pod ({refusal.reason}): {refusal.detail}"
        self._events.warn(
            PodRef(namespace, name, uid if isinstance(uid, str) else None), NOT_CONTROLLED, message
        )

    async def _read_gpus(self) -> GpuAssignments:
        """The source's answer within the budget. Without one, the last good answer serves for
        ``STALE_GPUS_OK_S`` (a running pod keeps its devices; its deletion still shows in the
        pod watch), so a kubelet blip does not release every clock; then nothing is known."""
        loop = asyncio.get_running_loop()
        try:
            answer = await asyncio.wait_for(
                loop.run_in_executor(self._gpu_reader, self._gpus.read), self._gpu_read_budget_s
            )
        except TimeoutError:
            answer = KubeletAssignments({}, f"no answer within {self._gpu_read_budget_s:.1f} s")
        now_s = loop.time()
        self.gpus_failing = isinstance(answer, KubeletAssignments) and answer.error is not None
        if not self.gpus_failing:
            self._good_gpus = (answer, now_s)
            return answer
        log.warning("GPU source: %s", answer.unknown_because())
        if self._good_gpus is not None and now_s - self._good_gpus[1] < STALE_GPUS_OK_S:
            return self._good_gpus[0]
        return answer

    async def updates(self) -> AsyncIterator[Desired]:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def notify() -> None:
            loop.call_soon_threadsafe(wake.set)

        mirrors = {what: _Mirror(notify) for what in ("pod", "service", "replicaset", "deployment")}
        listers = {
            "pod": self._pods,
            "service": self._services,
            "replicaset": self._replicasets,
            "deployment": self._deployments,
        }
        choose = self._choose_profile or profile_chooser(
            await asyncio.to_thread(self._node_gpu_product), self._profiles
        )
        for what, mirror in mirrors.items():
            threading.Thread(target=self._run_watch, args=(listers[what], mirror, what), daemon=True).start()
        parsed_cache: dict[str, tuple[Any, EnergyAwareLLMService | None]] = {}
        last: Desired | None = None
        recheck: float | None = None
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), recheck)
                wake.clear()
                if not all(m.synced for m in mirrors.values()):
                    continue
                pods = mirrors["pod"].snapshot()
                self._pods_now = pods
                services = _parse_services(mirrors["service"].snapshot(), parsed_cache)
                gpus = await self._read_gpus() if pods else KubeletAssignments({})
                decision = desired_instances(
                    pods,
                    services,
                    mirrors["replicaset"].snapshot(),
                    mirrors["deployment"].snapshot(),
                    gpus,
                    choose,
                    controlled=last.keys() if last is not None else (),
                )
                self.refusals.update(decision.refused)
                transient = any(r.reason in ("gpus-unknown", "no-pod-ip") for r in decision.refused.values())
                recheck = self._recheck_s if transient or self.gpus_failing else None
                if decision.instances != last:
                    last = decision.instances
                    yield decision.instances
        finally:
            self._stop.set()
            self._gpu_reader.shutdown(wait=False, cancel_futures=True)


def _parse_services(
    raw: dict[str, dict[str, Any]], cache: dict[str, tuple[Any, EnergyAwareLLMService | None]]
) -> dict[str, EnergyAwareLLMService]:
    """Services that parse, by ns/name; each version is parsed (and warned about) once."""
    parsed: dict[str, EnergyAwareLLMService] = {}
    for key in list(cache):
        if key not in raw:
            del cache[key]
    for key, obj in raw.items():
        version = obj.get("metadata", {}).get("resourceVersion")
        cached = cache.get(key)
        if cached is None or cached[0] != version or version is None:
            cached = (version, parse_service(obj))
            cache[key] = cached
        if cached[1] is not None:
            parsed[key] = cached[1]
    return parsed
