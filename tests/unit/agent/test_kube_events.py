"""The event writer never blocks its caller and never raises, even with an apiserver that
accepts connections and never answers (a real socket, not a fake client)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from joulescale_agent.events import CLOCK_POLICY_ERROR, NOT_CONTROLLED, REASONS, PodRef
from joulescale_agent.kube_events import MAX_MESSAGE_BYTES, KubeEventRecorder, cap_message


@pytest.fixture
def hanging_apiserver() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)  # connections complete in the backlog; no answer ever comes
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def _recorder(host: str, max_pending: int) -> KubeEventRecorder:
    configuration = client.Configuration()
    configuration.host = host
    return KubeEventRecorder(client.ApiClient(configuration), "gpu-node-1", max_pending=max_pending)


def test_warn_never_blocks_and_drops_beyond_the_queue_when_the_apiserver_hangs(
    hanging_apiserver: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = _recorder(hanging_apiserver, max_pending=10)
    pod = PodRef("tenant-a", "decode-0", "uid-1")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "joulescale_agent.kube_events"):
        for i in range(500):
            recorder.warn(pod, CLOCK_POLICY_ERROR, f"message {i}")
    assert time.monotonic() - started < 0.5
    assert 500 - 11 <= recorder.dropped <= 500 - 10, "the queue holds max_pending, the thread one"
    assert len(caplog.records) <= 6, "drops are logged sparingly, not once each"

    started = time.monotonic()
    recorder.close(timeout_s=0.3)
    assert time.monotonic() - started < 1.0, "close is bounded by its timeout"
    recorder.warn(pod, NOT_CONTROLLED, "after close")  # a no-op, no error
    recorder.close()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("short", "short"),
        ("a" * 5000, "a" * MAX_MESSAGE_BYTES),
        ("é" * 600, "é" * (MAX_MESSAGE_BYTES // 2)),  # 2 bytes each: cut on a character boundary
        ("a" + "€" * 400, "a" + "€" * ((MAX_MESSAGE_BYTES - 1) // 3)),
        ("bad \ud800 surrogate", "bad ? surrogate"),
        ("", ""),
    ],
)
def test_messages_are_capped_in_utf8_bytes_and_always_encodable(message: str, expected: str) -> None:
    capped = cap_message(message)
    assert capped == expected
    assert len(capped.encode("utf-8")) <= MAX_MESSAGE_BYTES


def test_reasons_are_distinct_machine_words_the_apiserver_accepts() -> None:
    assert len(set(REASONS)) == len(REASONS)
    assert all(r.isalnum() and r[0].isupper() and len(r) <= 128 for r in REASONS)
