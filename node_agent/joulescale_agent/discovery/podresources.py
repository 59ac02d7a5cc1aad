"""The kubelet PodResources API (v1, gRPC over a unix socket): which devices each pod holds.

The kubelet serves ``v1.PodResourcesLister/List`` on
``/var/lib/kubelet/pod-resources/kubelet.sock`` (mount it read-only into the agent). The few
protobuf messages needed are decoded by hand (wire format: tag varints and length-delimited
fields) so that the agent needs grpcio only, without generated code. grpcio is imported
lazily: nodes in ``--gpu-source=pod-spec-unsafe`` mode do not need it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from joulescale_agent.clock import Clock, monotonic
from joulescale_agent.discovery.gpus import NO_GPUS, KubeletAssignments

log = logging.getLogger(__name__)

LIST_METHOD = "/v1.PodResourcesLister/List"
GPU_RESOURCE = "nvidia.com/gpu"
GRPC_MODULE = "grpc"
"""Imported when the source is built; `joulescale-agent --check` imports it too."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, bytes for length-delimited fields / int for varints); others skipped."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 2:
            length, at = _varint(data, at)
            if at + length > len(data):
                raise ValueError("truncated field")
            yield number, data[at : at + length]
            at += length
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def parse_list_response(data: bytes, resource: str = GPU_RESOURCE) -> dict[str, tuple[str, ...]]:
    """ListPodResourcesResponse -> {"namespace/pod": device ids of ``resource``}."""
    pods: dict[str, tuple[str, ...]] = {}
    for number, pod in _fields(data):
        if number != 1 or not isinstance(pod, bytes):
            continue
        name = namespace = ""
        devices: list[str] = []
        for field_number, value in _fields(pod):
            if not isinstance(value, bytes):
                continue
            if field_number == 1:
                name = value.decode()
            elif field_number == 2:
                namespace = value.decode()
            elif field_number == 3:  # ContainerResources
                for c_number, c_value in _fields(value):
                    if c_number != 2 or not isinstance(c_value, bytes):
                        continue
                    resource_name, ids = "", []
                    for d_number, d_value in _fields(c_value):  # ContainerDevices
                        if d_number == 1 and isinstance(d_value, bytes):
                            resource_name = d_value.decode()
                        elif d_number == 2 and isinstance(d_value, bytes):
                            ids.append(d_value.decode())
                    if resource_name == resource:
                        devices.extend(ids)
        if devices:
            pods[f"{namespace}/{name}"] = tuple(devices)
    return pods


class PodResourcesSource:
    """``--gpu-source=podresources``: one kubelet List per ``read``, at most every
    ``max_age_s`` (a burst of recomputes shares one answer), each within ``timeout_s``.
    ``read`` blocks for up to ``timeout_s``: the caller runs it off the event loop."""

    def __init__(
        self,
        socket_path: Path,
        *,
        timeout_s: float = 1.0,
        max_age_s: float = 1.0,
        clock: Clock = monotonic,
        index_to_uuid: Callable[[str], str] | None = None,
    ) -> None:
        grpc: Any = importlib.import_module(GRPC_MODULE)
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._list = self._channel.unary_unary(LIST_METHOD)  # raw bytes in and out
        self._error: type[Exception] = grpc.RpcError
        self._timeout_s = timeout_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._index_to_uuid = index_to_uuid
        self._last: KubeletAssignments = NO_GPUS
        self._fetched_at_s: float | None = None

    def _uuids(self, ids: tuple[str, ...]) -> tuple[str, ...]:
        if self._index_to_uuid is None:
            return ids
        return tuple(self._index_to_uuid(i) if i.isdigit() else i for i in ids)

    def read(self) -> KubeletAssignments:
        now_s = self._clock()
        if self._fetched_at_s is not None and now_s - self._fetched_at_s < self._max_age_s:
            return self._last
        self._fetched_at_s = now_s
        try:
            answer = parse_list_response(self._list(b"", timeout=self._timeout_s))
        except (self._error, ValueError) as error:  # UnicodeDecodeError is a ValueError
            log.warning("kubelet PodResources List failed: %s", error)
            self._last = KubeletAssignments({}, type(error).__name__)
            return self._last
        self._last = KubeletAssignments({key: self._uuids(ids) for key, ids in answer.items()})
        return self._last

    def close(self) -> None:
        self._channel.close()
