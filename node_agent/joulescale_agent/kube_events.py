"""The agent's one Kubernetes event writer: Warning Events on pods (the ``EventRecorder`` seam).

The kubernetes client is synchronous, so events go through a small bounded queue to one daemon
thread: ``warn`` never blocks the event loop and never raises; when the queue is full the event
is dropped (and logged). A repeated (pod, reason, message) bumps the count of the Event already
posted instead of creating a new one, like the kubelet's recorder. Messages are cut to what the
apiserver accepts. Needs ``create`` and ``patch`` on ``events`` (core/v1) in the pods'
namespaces.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as _client
from kubernetes.client.exceptions import ApiException

from joulescale_agent.events import PodRef

log = logging.getLogger(__name__)

client: Any = _client  # parts of the kubernetes client are untyped
COMPONENT = "joulescale-agent"
MAX_MESSAGE_BYTES = 1024
"""The apiserver's limit on a new-style Event's note, in bytes as Go counts them; core/v1
Events are held to it too, so that no message (tenant text included) makes a huge Event."""
MAX_REMEMBERED = 1000
"""Posted Events remembered for counting repeats; beyond that the memory starts again."""
_Item = tuple[PodRef, str, str]


def cap_message(message: str) -> str:
    """``message`` cut to ``MAX_MESSAGE_BYTES`` of UTF-8, never in the middle of a character
    (a lone surrogate, which JSON cannot carry, becomes ``?``)."""
    return message.encode("utf-8", "replace")[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore")


class KubeEventRecorder:
    def __init__(self, api: Any, node_name: str, max_pending: int = 100) -> None:
        self._core = client.CoreV1Api(api)
        self._node = node_name
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_pending)
        self._posted: dict[tuple[PodRef, str, str], tuple[str, int]] = {}
        self._closed = False
        self._abandoned = False
        self.dropped = 0
        """Events not posted because the queue was full."""
        self._thread = threading.Thread(target=self._run, name="kube-events", daemon=True)
        self._thread.start()

    def warn(self, pod: PodRef, reason: str, message: str) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait((pod, reason, cap_message(message)))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning(
                    "event queue full; dropped %d events (now %s on %s)", self.dropped, reason, pod.key
                )

    def close(self, timeout_s: float = 2.0) -> None:
        """Post what is queued within ``timeout_s`` in all, then stop: what is left is dropped
        (an apiserver that hangs holds the daemon thread, never the caller)."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._abandoned = True

    def _run(self) -> None:
        while (item := self._queue.get()) is not None and not self._abandoned:
            try:
                self._post(*item)
            except ApiException as error:
                log.warning("cannot post event on %s: %s %s", item[0].key, error.status, error.reason)
            except Exception as error:  # the apiserver being away must not kill the thread
                log.warning("cannot post event on %s: %s", item[0].key, error)

    def _post(self, pod: PodRef, reason: str, message: str) -> None:
        now = datetime.now(UTC)
        key = (pod, reason, message)
        seen = self._posted.get(key)
        if seen is not None:
            name, count = seen
            body = {"count": count + 1, "lastTimestamp": now.isoformat()}
            try:
                self._core.patch_namespaced_event(name, pod.namespace, body)
                self._posted[key] = (name, count + 1)
                return
            except ApiException as error:
                if error.status != 404:  # gone (events expire): post it anew
                    raise
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{pod.name}.", namespace=pod.namespace),
            involved_object=client.V1ObjectReference(
                api_version="v1", kind="Pod", namespace=pod.namespace, name=pod.name, uid=pod.uid or None
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
        created = self._core.create_namespaced_event(pod.namespace, event)
        if len(self._posted) >= MAX_REMEMBERED:
            self._posted.clear()
        self._posted[key] = (str(created.metadata.name), 1)
