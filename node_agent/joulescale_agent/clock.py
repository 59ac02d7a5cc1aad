"""The injected clock: monotonic seconds. Production uses time.monotonic (shared by all processes
of a Linux host, which the simulated GPU relies on); tests pass a manual clock."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]

monotonic: Clock = time.monotonic


class ManualClock:
    """A clock that moves only when told to; for tests and time-compressed runs."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
