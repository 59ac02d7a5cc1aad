"""Every bound on what a twin run accepts, and the checks that enforce them, in one place.

The CLI's argument types, ``CompareSettings`` and the trace loaders all check against these
caps, so a hostile or mistyped input (``--duration inf``, ``--gpus 100000``, a prompt of 1e12
tokens, ``/dev/zero`` as a trace) is refused at once with a message naming it, instead of
hanging, exhausting memory or ending in a traceback. Each cap says why it is where it is.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from joulescale.profiles.model import MAX_CLOCK_MHZ as PROFILE_MAX_CLOCK_MHZ
from joulescale.profiles.model import MAX_WATTS

MAX_GPUS = 1024
"""The twin simulates every instance in one process and, without ``--prefill-instances``,
searches the capacity once per possible split; 1024 GPUs is already hours of simulation."""
MAX_DURATION_S = 86_400.0
"""One simulated day. The window is replayed request by request; BiScale's window is 300 s."""
MAX_SIMULATED_WORK = 5_000_000.0
"""Cap on duration (s) x GPUs x capacity searches (one per candidate P/D split): the twin
simulates roughly 500 of these units per wall-clock second on one core, so the cap is about
three hours of computation. The default run (300 s x 16 GPUs x 3 splits) is 14 400."""
MAX_LOAD = 2.0
"""Fraction of the static-max capacity; above 2x the queues only grow and the run says nothing."""
MAX_RATE_PER_S = 100_000.0
"""A replayed rate (``--rate``): far above what 1024 GPUs serve; the work cap bounds the run anyway."""
MIN_SCRAPE_PERIOD_MS = 1.0
"""Every scrape is an event per instance; the agent's scrape loop cannot run faster than 1 kHz."""
MAX_PERIOD_MS = 60_000.0
"""Scrape periods, scrape delays and clock settle times beyond a minute describe no real agent
or GPU (NVML clock changes settle in milliseconds)."""
MAX_SLO_MS = 3_600_000.0
"""An hour per token or to the first token: anything longer is not a latency objective."""
MAX_POWER_WATTS = MAX_WATTS
MAX_CLOCK_MHZ = PROFILE_MAX_CLOCK_MHZ
"""Both as the profile format bounds them (``joulescale.profiles.model``)."""
MAX_SEED = 2**63 - 1

MAX_TRACE_BYTES = 16 * 1024 * 1024
"""The shipped traces are under 1 MB; a run replays minutes of a trace, so cut a longer one
(e.g. ``head -n``) to the part to replay."""
MAX_TRACE_LINES = 50_000
"""2.5 times the longest shipped trace (azure-conv, 19 366 rows: an hour of traffic), as large
as public Mooncake trace files (tens of thousands of lines). It also bounds the time to read a
file to its last row: a file at the caps whose last row is bad is refused in well under a second."""
MAX_LINE_CHARS = 65_536
"""A Mooncake JSON line with its block hashes is a few kB; a longer line is not a request."""
MAX_REQUEST_TOKENS = 10_000_000
"""Prompt plus output tokens of one request: above the longest context of any served model.
Each profile's KV capacity (tokens one instance holds) is the tighter, per-run bound."""
MAX_TIMESTAMP_MS = float(2**53)
"""Beyond 2**53 a float no longer holds whole milliseconds, so arrival gaps would be noise."""
MAX_TRACE_SPAN_S = 366 * 86_400.0
"""A trace spanning more than a year is almost surely a unit mistake (microseconds read as ms)."""
MAX_REPORTED_PROBLEMS = 1000
"""A file with more malformed rows than this stops being read: its format is wrong, not a row."""


class SettingError(ValueError):
    """A setting is out of bounds; ``setting`` names it (``CompareSettings`` field name)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


_INT_TEXT = re.compile(r"[+-]?[0-9]{1,19}")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")
"""ASCII only: ``int()`` and ``float()`` also take Unicode digits, underscores and 'nan'."""


def finite_in(value: float, low: float, high: float, *, low_open: bool = False, unit: str = "") -> float:
    """``value`` if finite and within [low, high] (or (low, high] with ``low_open``); else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    number = float(value)
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]{unit}"
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number in {interval}, got {value}")
    if number < low or (low_open and number == low) or number > high:
        raise ValueError(f"must be in {interval}, got {value}")
    return number


def int_in(value: int, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) within [low, high]; else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"must be an integer in [{low}, {high}], got {value}")
    return value


def bounded_float(setting: str, value: float, low: float, high: float, *, low_open: bool = False) -> float:
    """``finite_in`` for a settings field: the error is a ``SettingError`` naming it."""
    try:
        return finite_in(value, low, high, low_open=low_open)
    except ValueError as error:
        raise SettingError(setting, f"{setting} {error}") from None


def bounded_int(setting: str, value: int, low: int, high: int) -> int:
    try:
        return int_in(value, low, high)
    except ValueError as error:
        raise SettingError(setting, f"{setting} {error}") from None


def float_argument(low: float, high: float, *, low_open: bool = False, unit: str = "") -> Callable[[str], float]:
    """An argparse ``type=``: a plain ASCII decimal number, finite, within the bounds."""

    def parse(text: str) -> float:
        if not _FLOAT_TEXT.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"expected a decimal number, got {_shown(text)}")
        try:
            return finite_in(float(text), low, high, low_open=low_open, unit=unit)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = "number"
    return parse


def int_argument(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type=``: a plain ASCII integer within the bounds."""

    def parse(text: str) -> int:
        if not _INT_TEXT.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}], got {_shown(text)}")
        try:
            return int_in(int(text), low, high)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = "integer"
    return parse


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def check_work(duration_s: float, gpus: int, splits: int) -> None:
    """The work bound: duration (s) x GPUs x capacity searches must stay under the cap."""
    work = duration_s * gpus * splits
    if work > MAX_SIMULATED_WORK:
        raise SettingError(
            "work",
            f"run too large: {duration_s:g} s x {gpus} GPUs x {splits} split search(es) = {work:.3g} "
            f"exceeds the work cap of {MAX_SIMULATED_WORK:.3g}; shorten the duration, use fewer GPUs "
            "or fix the number of prefill instances")
