"""The re-lock back-off: after a release for cause, no clock is locked again for a while.

Releasing a clock is the safe direction and happens at once (stale or unreadable metrics, a
read-back that stays wrong, a GPU error, a policy bug). Locking again right away would let any
input that alternates between good and bad flap the clock faster than the governor's minimum
hold, so a lock waits ``base_s`` after such a release; a release that comes within ``max_s``
of the previous back-off's end doubles it, up to ``max_s``.
"""

from __future__ import annotations


class RelockBackoff:
    def __init__(self, base_s: float, max_s: float) -> None:
        self._base_s = base_s
        self._max_s = max_s
        self.backoff_s = 0.0
        """The current back-off (0 before the first release)."""
        self._until_s: float | None = None

    def released(self, now_s: float) -> float:
        """A release for cause at ``now_s``; returns the back-off that now applies."""
        recent = self._until_s is not None and now_s - self._until_s < self._max_s
        self.backoff_s = min(self.backoff_s * 2, self._max_s) if recent else self._base_s
        self._until_s = now_s + self.backoff_s
        return self.backoff_s

    def holds(self, now_s: float) -> bool:
        """True while no lock may be taken."""
        return self._until_s is not None and now_s < self._until_s
