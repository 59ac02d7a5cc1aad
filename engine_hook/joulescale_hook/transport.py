"""The hook's transport: Unix datagrams from the engine's publisher to the agent's receiver.

One socket per pod, ``<hook dir>/<pod uid>/hook.sock`` on a hostPath directory that the engine
pods and the agent's DaemonSet both mount. Each engine container mounts only its own ``<pod uid>``
subdirectory (the operator renders ``subPathExpr``), where it finds the socket at the path in
``JOULESCALE_HOOK_SOCKET``; the agent knows each pod's UID, so the directory's name maps a socket
to its pod, and no pod can reach another's. The agent binds (it is the reader, one per pod); the
engine sends.

Datagrams rather than a stream: a message arrives whole or not at all, so there is no framing to
resume after a partial non-blocking write and no way for a writer to desynchronise the reader; a
reader that restarts simply binds again, with no accept loop and no per-connection state; and a
full receive buffer shows as ``EAGAIN`` on the sender, which drops the message instead of waiting.

The publisher never blocks the engine and never raises into it. ``publish`` only appends to a
bounded queue, sharing no lock with the sender thread (full: the oldest message is dropped and counted); a daemon thread encodes and
sends; a missing, dead, slow or restarted reader costs dropped messages and a reconnect attempt
at most every ``RECONNECT_S``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from joulescale_hook.schema import MAX_DATAGRAM, HookDecodeError, Message, decode, encode

SOCKET_ENV = "JOULESCALE_HOOK_SOCKET"
"""The socket path in the engine container (the operator renders it)."""
SOCKET_NAME = "hook.sock"
RECONNECT_S = 0.5
QUEUE_CAPACITY = 256
LINGER_S = 0.02
"""Longest a message published without a wake-up waits for the sender thread."""


def socket_path(host_dir: str, pod_uid: str) -> str:
    """Where the agent binds the socket of the pod ``pod_uid``, under the node's hook directory."""
    return os.path.join(host_dir, pod_uid, SOCKET_NAME)


def socket_path_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The engine's socket path from its environment, or None when the hook is not configured."""
    env = os.environ if environ is None else environ
    return env.get(SOCKET_ENV) or None


@dataclass(frozen=True, slots=True)
class PublisherStats:
    published: int
    """Messages handed to ``publish``."""
    sent: int
    dropped: int
    """Messages that never reached the reader: queue overflow, no reader, reader's buffer full,
    or a value the schema cannot carry."""
    errors: int
    """Exceptions caught inside the publisher (never raised into the engine)."""


class HookPublisher:
    """Sends hook messages to ``path`` from a background thread; every method is safe to call
    from the engine's scheduler and none raises."""

    def __init__(self, path: str, capacity: int = QUEUE_CAPACITY) -> None:
        self._path = path
        # No lock is shared with the sender thread: on a loaded host the OS may preempt a thread
        # holding one, and the engine's thread would wait out the preemption. deque's append and
        # popleft are atomic, and each counter has one writer (the engine's thread: published,
        # overflow, errors; the sender: sent, undelivered, send_errors).
        self._queue: deque[Message | Callable[[], Message]] = deque()
        self._capacity = capacity
        # A bare lock as the sender's wake-up signal: releasing it costs the engine's thread a C
        # call (a threading.Event's set() is Python code, several microseconds per message).
        self._signal = threading.Lock()
        self._signal.acquire()
        self._draining = False
        self._closed = False
        self._published = 0
        self._overflow = 0
        self._errors = 0
        self._sent = 0
        self._undelivered = 0
        self._send_errors = 0
        self._source = os.getpid()
        self._sock: socket.socket | None = None
        self._next_connect = 0.0
        self._thread = threading.Thread(target=self._run, name="joulescale-hook", daemon=True)
        self._thread.start()

    def publish(self, message: Message | Callable[[], Message], wake: bool = True) -> None:
        """Queue ``message``; O(1), never blocks, never raises. A callable is called on the
        sender thread to make the message: the engine's thread then only snapshots the values
        (what may change after the call returns) and leaves the rest of the work off its path.
        ``wake=False`` spares the engine's thread the wake-up of the sender (a futex call): the
        message goes with the next woken one, or within ``LINGER_S``. Call it from one thread
        (the engine's scheduler)."""
        try:
            self._published += 1
            queue = self._queue
            if len(queue) >= self._capacity:
                try:
                    queue.popleft()
                    self._overflow += 1
                except IndexError:
                    pass  # the sender took it meanwhile
            queue.append(message)
            if wake:
                self._wake()
        except Exception:
            self._errors += 1

    def stats(self) -> PublisherStats:
        return PublisherStats(self._published, self._sent, self._overflow + self._undelivered,
                              self._errors + self._send_errors)

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Wait until the queue is empty and its last message sent (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._queue and not self._draining:
                return True
            time.sleep(0.001)
        return False

    def close(self) -> None:
        try:
            self._closed = True
            self._wake()
            self._thread.join(timeout=1.0)
        except Exception:
            self._errors += 1

    def _wake(self) -> None:
        # try/except rather than contextlib.suppress: this is on the engine's path, and cheaper.
        try:  # noqa: SIM105
            self._signal.release()
        except RuntimeError:
            pass  # already released: the sender is signalled

    def _run(self) -> None:
        while not self._closed:
            self._signal.acquire(timeout=LINGER_S)
            try:
                self._drain()
            except Exception:
                self._send_errors += 1
        self._disconnect()

    def _drain(self) -> None:
        while True:
            self._draining = True  # before the queue is seen empty: flush never returns early
            try:
                message = self._queue.popleft()
            except IndexError:
                self._draining = False
                return
            delivered = False
            try:
                if callable(message):
                    message = message()
                delivered = self._send(encode(message, self._overflow + self._undelivered, self._source))
            except Exception:
                self._send_errors += 1
            if delivered:
                self._sent += 1
            else:
                self._undelivered += 1

    def _send(self, data: bytes) -> bool:
        sock = self._connected()
        if sock is None:
            return False
        try:
            sock.send(data)
            return True
        except BlockingIOError:
            return False  # the reader is behind: drop, keep the connection
        except OSError as e:
            # The reader went away (ECONNREFUSED) or rebound a new socket on the path: reconnect.
            if e.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTCONN, errno.EPIPE):
                self._send_errors += 1
            self._disconnect()
            return False

    def _connected(self) -> socket.socket | None:
        if self._sock is not None:
            return self._sock
        now = time.monotonic()
        if now < self._next_connect:
            return None
        self._next_connect = now + RECONNECT_S
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self._path)
        except OSError:
            sock.close()
            return None
        self._sock = sock
        return sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
            self._next_connect = 0.0


class HookReceiver:
    """The reading end, bound at ``path`` (a stale socket there is replaced). Writable by any
    local user (mode 0666): the engine may run under another uid than the agent; what it writes
    is checked by ``decode``, and the path alone identifies the pod.

    The directory belongs to the engine's pod, which may plant a symbolic link where the socket
    goes: the mode is set through a descriptor of the bound node itself (opened without following
    links, checked to be the socket just bound), never by path."""

    def __init__(self, path: str) -> None:
        self.path = path
        # The pod's directory: kubelet makes it when the pod starts (subPathExpr); an agent that
        # binds first makes it itself.
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # unlink never follows a link: a planted one is removed, not its target
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(path)
            _make_writable(path)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> Message | None:
        """The next valid message, or None when none waits; invalid datagrams raise
        ``HookDecodeError`` (the caller counts and skips them)."""
        try:
            data = self.sock.recv(MAX_DATAGRAM)
        except BlockingIOError:
            return None
        return decode(data)

    def receive_wait(self, timeout_s: float) -> Message | None:
        """Block up to ``timeout_s`` for the next valid message (tests and tools)."""
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(MAX_DATAGRAM)
        except TimeoutError:
            return None
        finally:
            self.sock.setblocking(False)
        return decode(data)

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _make_writable(path: str) -> None:
    """chmod 0666 the socket node at ``path`` without following a link swapped in after bind."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError(errno.EPERM, f"{path} is no longer the socket just bound")
        os.chmod(f"/proc/self/fd/{fd}", 0o666)
    finally:
        os.close(fd)

__all__ = [
    "SOCKET_ENV", "SOCKET_NAME",
    "HookDecodeError", "HookPublisher", "HookReceiver", "PublisherStats",
    "socket_path", "socket_path_from_env",
]
