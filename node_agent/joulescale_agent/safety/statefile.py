"""The host-path file that names every GPU whose clock the agent locked.

The set lives in memory first; the file is its best-effort copy for a successor after a crash.
A GPU is recorded *before* its clock is locked and forgotten only *after* its reset succeeded,
so whatever write fails, the file names a superset of the locked GPUs. A write that fails
(full disk, EIO, permission) never raises: the caller keeps working from memory, and
``add`` tells it whether the GPU is on disk (the actuator locks only GPUs that are).

Reading is strict: anything but ``{"locked_gpus": [<uuid str>...]}`` (torn, empty, huge, another
shape, wrong types) means "the GPUs it named are unknown", reported as the ``ALL`` entry so the
actuator resets every GPU of the node at start-up.

One agent per file: ``acquire`` takes an exclusive ``flock`` on ``<file>.lock`` next to it (the
state file itself is replaced on every write, so it cannot carry the lock) and holds it for the
life of the process; the kernel drops it when the process dies, even by kill -9.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
from pathlib import Path
from typing import IO

from joulescale_agent import errors

log = logging.getLogger(__name__)

ALL = "*"
"""The entry that stands for "every GPU of the node" after an unreadable file."""
MAX_BYTES = 1 << 20
"""A state file larger than this is foreign: a node has a handful of GPUs."""


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._locked: set[str] = set(self._read())
        self._on_disk: frozenset[str] = frozenset(self._locked)
        self.write_error: str | None = None
        """The last write's error, None once the file matches memory again."""
        self.write_failures = 0
        self._lock_handle: IO[bytes] | None = None

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def acquire(self) -> None:
        """Hold the node-wide lock of this file; StateFileLockedError if another agent holds it.

        A lock file that cannot even be opened (read-only host path) is logged and tolerated: the
        agent still runs, but without protection from a second agent on the same file.
        """
        handle = self._open_lock_file()
        if handle is None:
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise errors.StateFileLockedError(
                    f"state file {self.path} is in use by another agent (lock {self.lock_path} is held)"
                ) from None
            log.error("cannot lock %s (%s); another agent could share this state file", self.lock_path, error)
            return
        self._lock_handle = handle

    def _open_lock_file(self) -> IO[bytes] | None:
        with contextlib.suppress(OSError):  # the open below says what is wrong
            self.path.parent.mkdir(parents=True, exist_ok=True)
        for mode in ("ab", "rb"):  # "rb": an existing lock file on a read-only mount still locks
            try:
                return self.lock_path.open(mode)
            except OSError as error:
                last = error
        log.error("cannot open %s (%s); another agent could share this state file", self.lock_path, last)
        return None

    def release_lock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()  # closing the descriptor drops the flock
            self._lock_handle = None

    def _read(self) -> list[str]:
        try:
            # O_NONBLOCK: a FIFO put in the file's place must not hang the start-up.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return []
        except OSError as error:
            return self._unknown(f"unreadable: {error}")
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return self._unknown("not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                raw = handle.read(MAX_BYTES + 1)
        except OSError as error:
            return self._unknown(f"unreadable: {error}")
        finally:
            os.close(fd)
        if len(raw) > MAX_BYTES:
            return self._unknown(f"larger than {MAX_BYTES} bytes")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as error:
            return self._unknown(f"not JSON: {error}")
        locked = data.get("locked_gpus") if isinstance(data, dict) else None
        if not isinstance(locked, list) or not all(isinstance(u, str) and u for u in locked):
            return self._unknown('not {"locked_gpus": [<GPU UUID>...]}')
        return list(locked)

    def _unknown(self, why: str) -> list[str]:
        # A torn or foreign file must not stop the agent; the GPUs it named are unknown, so
        # the actuator resets every GPU of the node (see ClockActuator.recover).
        log.warning("state file %s %s; resetting every GPU of the node", self.path, why)
        return [ALL]

    def _write(self) -> None:
        """Persist the set; on failure keep memory as the truth and say so once per error."""
        wanted = frozenset(self._locked)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w") as handle:
                json.dump({"locked_gpus": sorted(wanted)}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as error:
            self.write_failures += 1
            message = f"{type(error).__name__}: {error.strerror or error}"
            if message != self.write_error:
                log.error(
                    "cannot write state file %s (%s); keeping the locked GPUs in memory", self.path, message
                )
            self.write_error = message
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            return
        if self.write_error is not None:
            log.warning("state file %s is written again", self.path)
        self.write_error = None
        self._on_disk = wanted

    @property
    def locked(self) -> frozenset[str]:
        return frozenset(self._locked)

    def recorded(self, uuid: str) -> bool:
        """Whether the file on disk names ``uuid`` (a successor would reset it)."""
        return uuid in self._on_disk or ALL in self._on_disk

    def add(self, uuid: str) -> bool:
        """Record a GPU before locking it; True once the file on disk names it."""
        self._locked.add(uuid)
        if not self.recorded(uuid):
            self._write()
        return self.recorded(uuid)

    def remove(self, uuid: str) -> None:
        """Forget a GPU after its reset; a failed write leaves a superset on disk, which is safe."""
        if uuid in self._locked:
            self._locked.discard(uuid)
            self._write()
        elif uuid in self._on_disk:
            self._write()
