"""Warning Events on pods the agent refuses to control: the tenant sees why in
``kubectl describe pod``. Written from a thread of their own; a failure is only logged."""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client

from joulescale_agent.discovery.desired import Refusal

log = logging.getLogger(__name__)

EVENT_REASON = "JouleScaleNotControlled"


class PodEvents:
    def __init__(self, core: client.CoreV1Api, node_name: str) -> None:
        self._core = core
        self._node = node_name
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")

    def post(self, pod: Mapping[str, Any], refusal: Refusal) -> None:
        meta = pod.get("metadata", {})
        namespace, name = meta.get("namespace"), meta.get("name")
        now = datetime.datetime.now(datetime.UTC)
        message = f"the JouleScale agent on {self._node} does not control this pod ({refusal.reason}): {refusal.detail}"
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{name}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version="v1", kind="Pod", name=name, namespace=namespace, uid=meta.get("uid")
            ),
            reason=EVENT_REASON,
            message=message[:1000],
            type="Warning",
            source=client.V1EventSource(component="joulescale-agent", host=self._node),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )

        def write() -> None:
            try:
                self._core.create_namespaced_event(namespace, body)
            except Exception as error:  # an Event is a courtesy: the log line and the metric remain
                log.debug("cannot record an Event on %s/%s: %s", namespace, name, error)

        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self._writer.submit(write)

    def close(self) -> None:
        self._writer.shutdown(wait=False, cancel_futures=True)
