"""The PodResources resolver against a real gRPC server on a unix socket."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from joulescale_agent.clock import ManualClock
from joulescale_agent.discovery.podresources import PodResourcesResolver, parse_list_response

grpc: Any = pytest.importorskip("grpc")


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (lengths < 128 suffice here)."""
    assert len(payload) < 128
    return bytes([(number << 3) | 2, len(payload)]) + payload


def pod_resources(namespace: str, name: str, devices: dict[str, list[str]]) -> bytes:
    container = _field(1, b"engine")
    for resource, ids in devices.items():
        container += _field(2, _field(1, resource.encode()) + b"".join(_field(2, i.encode()) for i in ids))
    container += bytes([(3 << 3) | 0, 7])  # cpu_ids = 7: a varint field the parser must skip
    return _field(1, _field(1, name.encode()) + _field(2, namespace.encode()) + _field(3, container))


class Kubelet:
    def __init__(self) -> None:
        self.answer = b""
        self.calls = 0
        self.dir = Path(tempfile.mkdtemp(prefix="podres"))  # short: unix socket paths are limited
        self.socket = self.dir / "kubelet.sock"
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))

        def list_pods(request: bytes, context: Any) -> bytes:
            self.calls += 1
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


@pytest.fixture
def kubelet() -> Iterator[Kubelet]:
    k = Kubelet()
    yield k
    k.stop()


def meta(namespace: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}}


def test_the_response_is_decoded_to_gpu_ids_per_pod_ignoring_other_resources() -> None:
    data = pod_resources("ns", "d0", {"nvidia.com/gpu": ["GPU-1", "GPU-2"], "example.com/nic": ["x"]})
    data += pod_resources("ns", "cpu-only", {"example.com/nic": ["y"]})
    assert parse_list_response(data) == {"ns/d0": ("GPU-1", "GPU-2")}


def test_a_truncated_response_is_an_error() -> None:
    with pytest.raises(ValueError, match="truncated"):
        parse_list_response(pod_resources("ns", "d0", {"nvidia.com/gpu": ["GPU-1"]})[:-3])


def test_the_resolver_asks_the_kubelet_and_caches_briefly(kubelet: Kubelet) -> None:
    kubelet.answer = pod_resources("ns", "d0", {"nvidia.com/gpu": ["GPU-1"]})
    clock = ManualClock()
    resolver = PodResourcesResolver(kubelet.socket, clock=clock, max_age_s=1.0)
    try:
        assert resolver.gpus_for(meta("ns", "d0")) == ("GPU-1",)
        assert resolver.gpus_for(meta("ns", "d0")) == ("GPU-1",)
        assert kubelet.calls == 1
        kubelet.answer += pod_resources("ns", "p0", {"nvidia.com/gpu": ["0", "1"]})
        assert resolver.gpus_for(meta("ns", "p0")) is None  # still cached: unknown for now
        assert resolver.gpus_for(meta("ns", "p0")) == ("0", "1")  # an unknown pod forces a refresh
        assert kubelet.calls == 2
    finally:
        resolver.close()


def test_device_indices_map_to_uuids(kubelet: Kubelet) -> None:
    kubelet.answer = pod_resources("ns", "p0", {"nvidia.com/gpu": ["0", "GPU-x"]})
    resolver = PodResourcesResolver(kubelet.socket, index_to_uuid={"0": "GPU-zero"}.__getitem__)
    try:
        assert resolver.gpus_for(meta("ns", "p0")) == ("GPU-zero", "GPU-x")
    finally:
        resolver.close()


def test_an_unreachable_kubelet_means_unknown_gpus_not_an_exception() -> None:
    resolver = PodResourcesResolver(Path(tempfile.gettempdir()) / "no-such-kubelet.sock", timeout_s=0.2)
    try:
        assert resolver.gpus_for(meta("ns", "d0")) is None
    finally:
        resolver.close()
