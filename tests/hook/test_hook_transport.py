"""The transport over real Unix datagram sockets: messages arrive, and no reader (absent, dead,
slow, restarted or hostile) blocks the publisher or raises into it."""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from joulescale_hook.schema import Engine, StepDone, StepScheduled
from joulescale_hook.transport import (
    HookPublisher,
    HookReceiver,
    _make_writable,
    socket_path,
    socket_path_from_env,
)


def done(step: int) -> StepDone:
    return StepDone(Engine.VLLM, step, time.monotonic_ns(), 1_000_000)


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return socket_path(str(tmp_path), "uid")  # real UIDs are 36 characters; pytest paths are long


@pytest.fixture
def publisher(sock_path: str) -> Iterator[HookPublisher]:
    p = HookPublisher(sock_path, capacity=64)
    yield p
    p.close()


def wait_for(condition, timeout_s: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_messages_arrive_in_order_with_their_content(sock_path: str, publisher: HookPublisher) -> None:
    assert not os.path.exists(os.path.dirname(sock_path))
    receiver = HookReceiver(sock_path)  # makes the pod's directory when kubelet has not yet
    try:
        sched = StepScheduled(Engine.VLLM, 1, time.monotonic_ns(), 1, 512, 3, 4000, 2,
                              [512], [0], [512], [1], [1000, 1500, 1500], [1, 2, 3], [64, 128], [5, 6])
        publisher.publish(sched)
        publisher.publish(done(1))
        first = receiver.receive_wait(2.0)
        second = receiver.receive_wait(2.0)
        assert isinstance(first, StepScheduled)
        assert first.step_id == 1
        assert tuple(first.waiting_prompt_tokens) == (64, 128)
        assert isinstance(second, StepDone)
        assert (second.step_id, second.duration_ns, second.dropped) == (1, 1_000_000, 0)
        assert first.source == second.source == os.getpid()
        assert publisher.flush()
        assert publisher.stats().sent == 2
        assert publisher.stats().dropped == 0
    finally:
        receiver.close()


def test_an_absent_reader_costs_dropped_messages_only(sock_path: str, publisher: HookPublisher) -> None:
    for i in range(100):
        publisher.publish(done(i))
    assert publisher.flush()
    stats = publisher.stats()
    assert (stats.published, stats.sent, stats.dropped, stats.errors) == (100, 0, 100, 0)


def test_a_reader_that_starts_late_or_restarts_is_reconnected(sock_path: str,
                                                              publisher: HookPublisher) -> None:
    publisher.publish(done(0))
    assert publisher.flush()
    receiver = HookReceiver(sock_path)
    wait_for(lambda: (publisher.publish(done(1)), receiver.receive_wait(0.05))[1] is not None)
    receiver.close()  # the agent dies ...
    publisher.publish(done(2))
    assert publisher.flush()
    receiver = HookReceiver(sock_path)  # ... and binds again on the same path
    try:
        wait_for(lambda: (publisher.publish(done(3)), receiver.receive_wait(0.05))[1] is not None)
        assert publisher.stats().errors == 0
    finally:
        receiver.close()


def test_a_reader_that_never_reads_never_blocks_the_publisher(sock_path: str,
                                                              publisher: HookPublisher) -> None:
    receiver = HookReceiver(sock_path)
    try:
        slowest = 0.0
        for i in range(20_000):
            t0 = time.perf_counter()
            publisher.publish(done(i))
            slowest = max(slowest, time.perf_counter() - t0)
        assert publisher.flush(5.0)
        stats = publisher.stats()
        assert stats.sent + stats.dropped == 20_000
        assert stats.dropped > 0
        assert stats.sent > 0
        assert slowest < 0.05  # a scheduler thread switch at worst, never a wait on the reader
        received = 0
        while receiver.receive() is not None:
            received += 1
        assert received == stats.sent
    finally:
        receiver.close()


def test_queue_overflow_drops_the_oldest_and_counts(sock_path: str) -> None:
    publisher = HookPublisher(sock_path, capacity=4)
    publisher.close()  # a sender that never drains: the queue fills from the engine's side alone
    for i in range(10):
        publisher.publish(done(i))
    stats = publisher.stats()
    assert (stats.published, stats.dropped, stats.errors) == (10, 6, 0)
    assert [m.step_id for m in publisher._queue] == [6, 7, 8, 9]


@pytest.mark.parametrize("hostile", ["regular file", "directory", "stream socket", "too long"])
def test_a_hostile_path_never_raises_into_the_engine(tmp_path: Path, hostile: str) -> None:
    path = str(tmp_path / "pod.sock")
    keep: socket.socket | None = None
    if hostile == "regular file":
        Path(path).write_text("x")
    elif hostile == "directory":
        os.mkdir(path)
    elif hostile == "stream socket":
        keep = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        keep.bind(path)
        keep.listen(1)
    else:
        path = str(tmp_path / ("x" * 200))
    publisher = HookPublisher(path)
    try:
        for i in range(50):
            publisher.publish(done(i))
        assert publisher.flush()
        stats = publisher.stats()
        assert (stats.sent, stats.dropped, stats.errors) == (0, 50, 0)
    finally:
        publisher.close()
        if keep is not None:
            keep.close()


def test_an_unencodable_message_is_dropped_and_counted(sock_path: str, publisher: HookPublisher) -> None:
    receiver = HookReceiver(sock_path)
    try:
        publisher.publish(StepDone(Engine.VLLM, -1, 0, 0))  # a step id the schema cannot carry
        publisher.publish(done(5))
        got = receiver.receive_wait(2.0)
        assert got is not None
        assert got.step_id == 5
        assert got.dropped == 1
        assert publisher.flush()
        assert publisher.stats().errors == 1
    finally:
        receiver.close()


def test_the_agent_binds_in_the_pods_directory_and_the_engine_reads_its_path() -> None:
    assert socket_path("/run/joulescale/hook", "u1") == "/run/joulescale/hook/u1/hook.sock"
    assert socket_path_from_env({}) is None
    assert socket_path_from_env({"JOULESCALE_HOOK_SOCKET": "/run/joulescale/hook/hook.sock"}) == (
        "/run/joulescale/hook/hook.sock")


def test_a_link_planted_where_the_socket_goes_is_replaced_not_followed(tmp_path: Path) -> None:
    """The pod owns its directory: a link to a host file must not make the agent chmod that file."""
    target = tmp_path / "host-secret"
    target.write_text("x")
    target.chmod(0o600)
    pod_dir = tmp_path / "pod-uid"
    pod_dir.mkdir()
    (pod_dir / "hook.sock").symlink_to(target)
    receiver = HookReceiver(str(pod_dir / "hook.sock"))
    try:
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert stat.S_ISSOCK((pod_dir / "hook.sock").lstat().st_mode)
        assert stat.S_IMODE((pod_dir / "hook.sock").lstat().st_mode) == 0o666
    finally:
        receiver.close()


def test_the_mode_is_never_set_through_a_link_swapped_in_after_bind(tmp_path: Path) -> None:
    target = tmp_path / "host-secret"
    target.write_text("x")
    target.chmod(0o600)
    link = tmp_path / "hook.sock"
    link.symlink_to(target)
    with pytest.raises(OSError, match="no longer the socket"):
        _make_writable(str(link))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
