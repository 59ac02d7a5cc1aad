"""The hook's transport: Unix datagrams from the engine's publisher to the agent's receiver.

One socket per pod, at ``<hook dir>/<pod uid>.sock`` on a hostPath directory that the engine pod
and the agent's DaemonSet both mount. The pod UID comes from the downward API; the agent knows
each pod's UID, and a UID stays under the 108-byte limit of a socket path where namespace and name
may not. The agent binds (it is the reader, and one reader per pod); the engine sends.

Datagrams rather than a stream: a message arrives whole or not at all, so there is no framing to
resume after a partial non-blocking write and no way for a writer to desynchronise the reader; a
reader that restarts simply binds again, with no accept loop and no per-connection state; and a
full receive buffer shows as ``EAGAIN`` on the sender, which drops the message instead of waiting.

The publisher never blocks the engine and never raises into it. ``publish`` only appends to a
bounded queue (full: the oldest message is dropped and counted); a daemon thread encodes and
sends; a missing, dead, slow or restarted reader costs dropped messages and a reconnect attempt
at most every ``RECONNECT_S``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

from joulescale_hook.schema import MAX_DATAGRAM, HookDecodeError, Message, decode, encode

SOCKET_ENV = "JOULESCALE_HOOK_SOCKET"
"""The socket path, when set explicitly (the operator renders it from the two below)."""
DIR_ENV = "JOULESCALE_HOOK_DIR"
POD_UID_ENV = "JOULESCALE_POD_UID"
DEFAULT_DIR = "/run/joulescale/hook"
RECONNECT_S = 0.5
QUEUE_CAPACITY = 256


def socket_path(directory: str, pod_uid: str) -> str:
    """Where the socket of the pod ``pod_uid`` lives; the agent uses the same function."""
    return os.path.join(directory, f"{pod_uid}.sock")


def socket_path_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The engine's socket path from its environment, or None when the hook is not configured."""
    env = os.environ if environ is None else environ
    explicit = env.get(SOCKET_ENV)
    if explicit:
        return explicit
    uid = env.get(POD_UID_ENV)
    if not uid:
        return None
    return socket_path(env.get(DIR_ENV) or DEFAULT_DIR, uid)


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
        self._queue: deque[Message] = deque()
        self._capacity = capacity
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._published = 0
        self._sent = 0
        self._dropped = 0
        self._errors = 0
        self._sock: socket.socket | None = None
        self._next_connect = 0.0
        self._thread = threading.Thread(target=self._run, name="joulescale-hook", daemon=True)
        self._thread.start()

    def publish(self, message: Message) -> None:
        """Queue ``message``; O(1), never blocks, never raises."""
        try:
            with self._lock:
                self._published += 1
                if len(self._queue) >= self._capacity:
                    self._queue.popleft()
                    self._dropped += 1
                self._queue.append(message)
            if not self._wake.is_set():
                self._wake.set()
        except Exception:
            self._errors += 1

    def stats(self) -> PublisherStats:
        with self._lock:
            return PublisherStats(self._published, self._sent, self._dropped, self._errors)

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Wait until the queue is empty (tests, shutdown); True when it is."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queue and not self._wake.is_set():
                    return True
            time.sleep(0.001)
        return False

    def close(self) -> None:
        try:
            self._closed = True
            self._wake.set()
            self._thread.join(timeout=1.0)
        except Exception:
            self._errors += 1

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            try:
                self._drain()
            except Exception:
                with self._lock:
                    self._errors += 1
        self._disconnect()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._wake.clear()
                    return
                message = self._queue.popleft()
                dropped = self._dropped
            delivered = False
            try:
                delivered = self._send(encode(message, dropped))
            except Exception:
                with self._lock:
                    self._errors += 1
            with self._lock:
                if delivered:
                    self._sent += 1
                else:
                    self._dropped += 1

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
                with self._lock:
                    self._errors += 1
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
    """The reading end, bound at ``path`` (stale sockets replaced). Writable by any local user
    (mode 0666): the engine may run under another uid than the agent; what it writes is checked by
    ``decode``, and the path alone identifies the pod."""

    def __init__(self, path: str) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.setblocking(False)

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


__all__ = [
    "DEFAULT_DIR", "DIR_ENV", "POD_UID_ENV", "SOCKET_ENV",
    "HookDecodeError", "HookPublisher", "HookReceiver", "PublisherStats",
    "socket_path", "socket_path_from_env",
]
