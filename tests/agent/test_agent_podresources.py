"""The PodResources source against a real gRPC server on a unix socket, and the discovery's
reading of it off the event loop within a time budget."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.harness.kubelet import Kubelet, pod_resources
from joulescale_agent.clock import ManualClock
from joulescale_agent.discovery.gpus import KubeletAssignments
from joulescale_agent.discovery.kube import STALE_GPUS_OK_S, KubeDiscovery
from joulescale_agent.discovery.podresources import PodResourcesSource, parse_list_response

pytest.importorskip("grpc")


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


def test_a_pod_message_longer_than_127_bytes_is_decoded() -> None:
    """A Deployment's pod (generated name, a namespace with a suffix, a UUID) takes a
    multi-byte length: both the fake kubelet's encoding and the parser's decoding must hold."""
    name, namespace = "llama-prefill-7c9d5b8f4d-x2k9q" * 3, "plan-e2e-4f2a91-" * 4
    data = pod_resources(namespace, name, {"nvidia.com/gpu": ["GPU-kwok-h100-0-3"]})
    assert data[1] & 0x80, "the pod message's length must need a second byte"
    assert parse_list_response(data) == {f"{namespace}/{name}": ("GPU-kwok-h100-0-3",)}


def test_a_truncated_response_is_an_error() -> None:
    with pytest.raises(ValueError, match="truncated"):
        parse_list_response(pod_resources("ns", "d0", {"nvidia.com/gpu": ["GPU-1"]})[:-3])


def test_one_list_answers_every_pod_and_is_reused_briefly(kubelet: Kubelet) -> None:
    kubelet.answer = pod_resources("ns", "d0", {"nvidia.com/gpu": ["GPU-1"]})
    clock = ManualClock()
    source = PodResourcesSource(kubelet.socket, clock=clock, max_age_s=1.0)
    try:
        answer = source.read()
        assert answer.gpus_for(meta("ns", "d0")) == ("GPU-1",)
        for i in range(50):  # unknown pods never make a call of their own
            assert answer.gpus_for(meta("ns", f"unknown-{i}")) is None
        assert source.read() is answer
        assert kubelet.calls == 1
        kubelet.answer += pod_resources("ns", "p0", {"nvidia.com/gpu": ["0", "1"]})
        clock.advance(1.0)
        assert source.read().gpus_for(meta("ns", "p0")) == ("0", "1")
        assert kubelet.calls == 2
    finally:
        source.close()


def test_device_indices_map_to_uuids(kubelet: Kubelet) -> None:
    kubelet.answer = pod_resources("ns", "p0", {"nvidia.com/gpu": ["0", "GPU-x"]})
    source = PodResourcesSource(kubelet.socket, index_to_uuid={"0": "GPU-zero"}.__getitem__)
    try:
        assert source.read().gpus_for(meta("ns", "p0")) == ("GPU-zero", "GPU-x")
    finally:
        source.close()


def test_an_unreachable_kubelet_means_unknown_gpus_not_an_exception() -> None:
    source = PodResourcesSource(Path(tempfile.gettempdir()) / "no-such-kubelet.sock", timeout_s=0.2)
    try:
        answer = source.read()
        assert answer.gpus_for(meta("ns", "d0")) is None
        assert answer.error is not None
        assert "no answer" in answer.unknown_because()
    finally:
        source.close()


def test_a_hanging_kubelet_costs_at_most_the_timeout(kubelet: Kubelet) -> None:
    kubelet.answer = pod_resources("ns", "d0", {"nvidia.com/gpu": ["GPU-1"]})
    kubelet.delay_s = 3.0
    source = PodResourcesSource(kubelet.socket, timeout_s=0.3)
    try:
        started = time.monotonic()
        answer = source.read()
        assert time.monotonic() - started < 1.0
        assert answer.gpus_for(meta("ns", "d0")) is None
    finally:
        source.close()


class _HangingSource:
    """A GPU source whose read blocks until released (a kubelet that never answers)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.answer = KubeletAssignments({"ns/d0": ("GPU-1",)})

    def read(self) -> KubeletAssignments:
        self.calls += 1
        if self.calls > 1:
            self.release.wait(10)
        return self.answer


async def test_discovery_reads_the_gpu_source_off_the_loop_within_its_budget() -> None:
    source = _HangingSource()
    discovery = KubeDiscovery(client.ApiClient(), "n1", gpus=source, gpu_read_budget_s=0.3)
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        good = await discovery._read_gpus()
        assert good.gpus_for(meta("ns", "d0")) == ("GPU-1",)
        started = time.monotonic()
        stale = await discovery._read_gpus()  # hangs: the last good answer serves a while
        assert time.monotonic() - started < 0.6
        assert stale.gpus_for(meta("ns", "d0")) == ("GPU-1",)
        assert discovery.gpus_failing, "a failing source must be asked again soon"
        assert max(gaps) < 0.15, "the event loop was blocked"
        # past the grace, a kubelet without an answer means no GPU is known
        discovery._good_gpus = (good, asyncio.get_running_loop().time() - STALE_GPUS_OK_S)
        gone = await discovery._read_gpus()
        assert gone.gpus_for(meta("ns", "d0")) is None
        assert "no answer within 0.3 s" in gone.unknown_because()
        assert max(gaps) < 0.15, "the event loop was blocked"
    finally:
        stop.set()
        source.release.set()
        await tick


@pytest.mark.parametrize(
    "answer",
    [
        b"\x0a\xff\xff\xff\xff\x0f",  # a pod of 4 GiB in a few bytes
        b"\x0b",  # wire type 3 (groups)
        b"\x80" * 64,  # a varint that never ends
        b"\x0a\x04\x0a\x02\xff\xfe",  # a pod name that is not UTF-8
        pod_resources("ns", "d0", {"nvidia.com/gpu": ["GPU-1"]})[:-1],
    ],
    ids=["huge-length", "group", "endless-varint", "not-utf8", "truncated"],
)
def test_a_malformed_kubelet_answer_means_unknown_gpus(kubelet: Kubelet, answer: bytes) -> None:
    kubelet.answer = answer
    source = PodResourcesSource(kubelet.socket)
    try:
        assert source.read().error in ("ValueError", "UnicodeDecodeError")
    finally:
        source.close()
