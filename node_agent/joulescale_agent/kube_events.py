"""Kubernetes Events on a pod whose clocks the agent cannot control (the EventRecorder seam).

The kubernetes client is synchronous, so events go through a small bounded queue to one daemon
thread; ``warn`` never blocks the event loop and never raises. A repeated (pod, reason,
message) bumps the count of the Event already posted instead of creating a new one, like the
kubelet's recorder. Needs ``create`` and ``patch`` on ``events`` (core/v1) in the pods'
namespaces.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as _client
from kubernetes import config as _config
from kubernetes.client.exceptions import ApiException

from joulescale_agent.control.instance import EngineInstance

log = logging.getLogger(__name__)

client: Any = _client  # parts of the kubernetes client are untyped
config: Any = _config
COMPONENT = "joulescale-agent"
MAX_MESSAGE_CHARS = 1024
"""The apiserver refuses longer Event messages."""
_Item = tuple[EngineInstance, str, str]


def api_client(kubeconfig: Path | None) -> Any:
    """An API client like discovery's: the kubeconfig file, else the in-cluster config."""
    if kubeconfig is not None:
        return config.new_client_from_config(config_file=str(kubeconfig))
    config.load_incluster_config()
    return client.ApiClient()


class KubeEventRecorder:
    def __init__(self, api: Any, node_name: str, max_pending: int = 100) -> None:
        self._core = client.CoreV1Api(api)
        self._node = node_name
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_pending)
        self._posted: dict[tuple[str, str, str, str], tuple[str, int]] = {}
        self._thread = threading.Thread(target=self._run, name="kube-events", daemon=True)
        self._thread.start()

    def warn(self, instance: EngineInstance, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait((instance, reason, message[:MAX_MESSAGE_CHARS]))
        except queue.Full:
            log.warning("event queue full; dropping %s event for %s", reason, instance.key)

    def close(self, timeout_s: float = 2.0) -> None:
        """Post what is queued (within ``timeout_s``) and stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._post(*item)
            except ApiException as error:
                log.warning("cannot post event on %s: %s %s", item[0].key, error.status, error.reason)
            except Exception as error:  # the apiserver being away must not kill the thread
                log.warning("cannot post event on %s: %s", item[0].key, error)

    def _post(self, instance: EngineInstance, reason: str, message: str) -> None:
        now = datetime.now(UTC)
        key = (instance.namespace, instance.pod, reason, message)
        seen = self._posted.get(key)
        if seen is not None:
            name, count = seen
            body = {"count": count + 1, "lastTimestamp": now.isoformat()}
            try:
                self._core.patch_namespaced_event(name, instance.namespace, body)
                self._posted[key] = (name, count + 1)
                return
            except ApiException as error:
                if error.status != 404:
                    raise
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{instance.pod}.", namespace=instance.namespace),
            involved_object=client.V1ObjectReference(
                api_version="v1", kind="Pod", namespace=instance.namespace, name=instance.pod
            ),
            reason=reason,
            message=message,
            type="Warning",
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            source=client.V1EventSource(component=COMPONENT, host=self._node),
            reporting_component=f"joulescale.io/{COMPONENT}",
            reporting_instance=self._node[:128],
        )
        created = self._core.create_namespaced_event(instance.namespace, event)
        if len(self._posted) > 1000:
            self._posted.clear()
        self._posted[key] = (str(created.metadata.name), 1)
