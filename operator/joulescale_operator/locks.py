"""One reconcile of a service at a time, whichever path starts it (kopf's handlers or the resync).

Two reconciles of one service racing each other can apply an older spec after a newer one and
write a status that describes neither. A lock per service serializes them; services never wait
on each other. Locks live only while someone holds or waits on them (a weak map), so deleted
services leave nothing behind.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

Key = tuple[str, str]
"""(namespace, name) of an EnergyAwareLLMService."""


class _ServiceLock:
    """A lock that a weak map can refer to (the builtin lock type takes no weak references)."""

    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()


class ServiceLocks:
    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[Key, _ServiceLock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: Key) -> Iterator[None]:
        """Run the block as the only reconcile of this service."""
        with self._guard:
            entry = self._locks.get(key)
            if entry is None:
                entry = _ServiceLock()
                self._locks[key] = entry
        with entry.lock:
            yield

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)
