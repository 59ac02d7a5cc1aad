"""A progress bar on a terminal for long twin runs; silent when the stream is not a terminal.

A comparison replays the trace a few dozen times (capacity probes, one run per policy, the
static-best sweep), which takes minutes on a long window; a person at a terminal wants to see it
move, while a script or a CI log wants no carriage returns in its output.
"""

from __future__ import annotations

from typing import Protocol, TextIO

_WIDTH = 24


class Progress(Protocol):
    def __call__(self, label: str, done: int, total: int) -> None: ...


def quiet(label: str, done: int, total: int) -> None:
    """The progress of a run nobody watches."""


class Bar:
    """``[#####-------]  3/9 label`` rewritten in place on ``stream``; ``close`` clears the line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._shown = 0

    def __call__(self, label: str, done: int, total: int) -> None:
        filled = _WIDTH * done // total if total > 0 else 0
        text = f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {done}/{total} {label}"[:100]
        self._stream.write("\r" + text.ljust(self._shown))
        self._stream.flush()
        self._shown = len(text)

    def close(self) -> None:
        if self._shown:
            self._stream.write("\r" + " " * self._shown + "\r")
            self._stream.flush()
            self._shown = 0


def bar_for(stream: TextIO) -> Bar | None:
    """A bar on ``stream`` if it is a terminal, else None (quiet)."""
    isatty = getattr(stream, "isatty", None)
    return Bar(stream) if callable(isatty) and isatty() else None
