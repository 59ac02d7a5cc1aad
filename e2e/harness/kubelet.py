"""A fake kubelet: the PodResources gRPC service on a unix socket, as the real one serves it,
with a scripted answer and an optional delay (a kubelet that hangs)."""

from __future__ import annotations

import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (its length a varint: a pod of a Deployment, with its
    generated name and namespace, takes more than 127 bytes)."""
    return bytes([(number << 3) | 2]) + _varint(len(payload)) + payload


def pod_resources(namespace: str, name: str, devices: dict[str, list[str]]) -> bytes:
    """One PodResources message of a ListPodResourcesResponse."""
    container = _field(1, b"engine")
    for resource, ids in devices.items():
        container += _field(2, _field(1, resource.encode()) + b"".join(_field(2, i.encode()) for i in ids))
    container += bytes([(3 << 3) | 0, 7])  # cpu_ids = 7: a varint field the parser must skip
    return _field(1, _field(1, name.encode()) + _field(2, namespace.encode()) + _field(3, container))


class Kubelet:
    def __init__(self) -> None:
        import grpc

        self.answer = b""
        self.delay_s = 0.0
        self.calls = 0
        self.dir = Path(tempfile.mkdtemp(prefix="podres"))  # short: unix socket paths are limited
        self.socket = self.dir / "kubelet.sock"
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))

        def list_pods(request: bytes, context: Any) -> bytes:
            self.calls += 1
            time.sleep(self.delay_s)
            return self.answer

        handler = grpc.method_handlers_generic_handler(
            "v1.PodResourcesLister", {"List": grpc.unary_unary_rpc_method_handler(list_pods)}
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(f"unix://{self.socket}")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)
        shutil.rmtree(self.dir, ignore_errors=True)
