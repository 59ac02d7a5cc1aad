"""An asyncio event loop on virtual time, for runs that must give the same result every time.

Several real components (the agent's control loops, the simulated engines' HTTP servers, a load
generator) run in one process over real loopback sockets, and the loop's clock moves only when
all of them wait: when nothing is ready, no socket has data and no worker thread is busy, time
jumps to the next timer. Computing, parsing, HTTP round trips and thread work therefore take no
virtual time, and the result cannot depend on how loaded the host is; that is what lets a test
compare the agent with the twin decision for decision, where a real-time run flips a threshold
decision on a few milliseconds of scheduling jitter.

Loopback TCP hands the bytes to the peer's socket within the sender's system call on Linux, so a
zero-timeout poll after a write sees them; worker threads (``asyncio.to_thread``, name
resolution) are counted and waited for in real time before time may move.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_NO_TIMER_WAIT_S = 1.0
"""With no timer scheduled, only I/O or a thread can wake the loop: poll for it in real time."""


class _VirtualSelector(selectors.BaseSelector):
    """The loop's selector: polls the real one without blocking and, when nothing is pending,
    moves virtual time by the loop's timeout instead of sleeping it."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready or timeout == 0:
            return ready
        if self._loop.threads_busy:
            # A worker thread's result wakes the loop through its self-pipe; time stands still.
            return self._inner.select(_NO_TIMER_WAIT_S)
        if timeout is None:
            return self._inner.select(_NO_TIMER_WAIT_S)
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``time()`` is virtual; see the module docstring."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self._now_s = start_s
        self._threads_busy = 0
        super().__init__(_VirtualSelector(selectors.DefaultSelector(), self))

    def time(self) -> float:
        return self._now_s

    def advance(self, seconds: float) -> None:
        self._now_s += max(seconds, 0.0)

    @property
    def threads_busy(self) -> bool:
        return self._threads_busy > 0

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._threads_busy += 1

        def done(_: asyncio.Future[T]) -> None:
            self._threads_busy -= 1

        future.add_done_callback(done)
        return future


def run_virtual(main: Coroutine[Any, Any, T], start_s: float = 1000.0) -> T:
    """``asyncio.run`` on a fresh VirtualTimeLoop."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start_s)) as runner:
        return runner.run(main)
