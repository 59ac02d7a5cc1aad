"""Kubernetes discovery: watches this node's labelled pods and the services (read-only).

The kubernetes client is synchronous, so each watch runs in a daemon thread that updates a
snapshot and wakes the event loop; ``updates`` recomputes the desired set after each wake-up
(coalescing bursts). Watches relist after errors and on 410 Gone, with a short back-off.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as _config
from kubernetes import watch as _watch
from kubernetes.client.exceptions import ApiException

from joulescale.api import GROUP, PLURAL, VERSION, EnergyAwareLLMService
from joulescale_agent.discovery.base import Desired
from joulescale_agent.discovery.desired import ROLE_LABEL, ProfileChooser, desired_instances, parse_service
from joulescale_agent.discovery.gpus import GpuResolver, default_resolver
from joulescale_agent.discovery.profiles import profile_chooser

log = logging.getLogger(__name__)

# Parts of the kubernetes client are untyped; they are used through Any on purpose.
config: Any = _config
watch: Any = _watch
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
Lister = Callable[..., Any]


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
        gpus: GpuResolver | None = None,
        choose_profile: ProfileChooser | None = None,
        watch_timeout_s: int = 30,
        retry_s: float = 1.0,
    ) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._node = node_name
        self._gpus = gpus or default_resolver()
        self._choose_profile = choose_profile
        self._watch_timeout_s = watch_timeout_s
        self._retry_s = retry_s
        self._stop = threading.Event()

    @classmethod
    def from_config(
        cls, node_name: str, kubeconfig: Path | None, gpus: GpuResolver | None = None
    ) -> KubeDiscovery:
        if kubeconfig is not None:
            api = config.new_client_from_config(config_file=str(kubeconfig))
        else:
            config.load_incluster_config()
            api = client.ApiClient()
        return cls(api, node_name, gpus=gpus)

    def _node_gpu_product(self) -> str:
        try:
            node = self._core.read_node(self._node)
        except ApiException as error:
            log.warning(
                "cannot read node %s (%s); profiles need the joulescale.io/profile annotation",
                self._node,
                error.reason,
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

    async def updates(self) -> AsyncIterator[Desired]:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def notify() -> None:
            loop.call_soon_threadsafe(wake.set)

        pods, services = _Mirror(notify), _Mirror(notify)
        choose = self._choose_profile or profile_chooser(await asyncio.to_thread(self._node_gpu_product))
        threads = [
            threading.Thread(target=self._run_watch, args=(self._pods, pods, "pod"), daemon=True),
            threading.Thread(target=self._run_watch, args=(self._services, services, "service"), daemon=True),
        ]
        for thread in threads:
            thread.start()
        last: Desired | None = None
        try:
            while True:
                await wake.wait()
                wake.clear()
                if not (pods.synced and services.synced):
                    continue
                parsed: dict[str, EnergyAwareLLMService] = {}
                for key, obj in services.snapshot().items():
                    service = parse_service(obj)
                    if service is not None:
                        parsed[key] = service
                desired = desired_instances(pods.snapshot(), parsed, self._gpus, choose)
                if desired != last:
                    last = desired
                    yield desired
        finally:
            self._stop.set()
