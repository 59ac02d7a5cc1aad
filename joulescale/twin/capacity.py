"""The cluster's SLO-meeting capacity under static-max, found by bisection on the rate scale.

``--load 0.67`` means 67 % of this capacity. A probe replays the trace window compressed by a
rate scale under static-max and checks both latencies at the SLO percentile; probes stop early
once too many requests missed a target for the percentile to be met. The window is the run's
``--duration`` or, when that holds too few requests for the percentile, as many seconds as hold
``window_requests(percentile)`` of the trace's requests at the probed rate. Results are cached per
configuration (in memory, and in a JSON file when a cache directory is given), so repeated
comparisons skip the search.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from joulescale.inputfile import read_bounded_text

_CACHE_FILE = "capacity.json"
_MAX_DOUBLINGS = 12
_MAX_CACHE_BYTES = 16 * 1024 * 1024
TAIL_REQUESTS = 5
"""Requests a capacity window holds above the SLO percentile: the P99 of 500 requests rests on 5
measured tails, while a 60 s window at a low rate may hold fewer requests than one percentile."""


class NoRateMeetsSloError(ValueError):
    """Even a tiny fraction of the trace's rate misses the SLO: ``joulescale.twin.feasibility`` says why."""


def window_requests(percentile: int) -> int:
    """Fewest requests a capacity window holds so that ``TAIL_REQUESTS`` lie above the percentile."""
    return math.ceil(TAIL_REQUESTS * 100 / max(100 - percentile, 1))


@dataclass(frozen=True, slots=True)
class Capacity:
    rate_scale: float
    """Highest probed multiple of the trace's arrival rate that met the SLO."""
    requests_per_second: float
    """The rate scale x the whole trace's mean arrival rate."""
    probes: int
    cached: bool = False
    window_requests: int = 0
    """Requests of the window the search replayed (at least ``window_requests(percentile)``)."""
    window_s: float = 0.0
    """That window's simulated seconds at the capacity's rate."""


def find_capacity_scale(meets_slo: Callable[[float], bool], start_scale: float = 1.0,
                        rel_tolerance: float = 0.03) -> tuple[float, int]:
    """Largest scale for which ``meets_slo`` holds, within ``rel_tolerance``; (scale, probes).

    Brackets by doubling or halving from ``start_scale``, then bisects geometrically.
    """
    probes = 0

    def probe(scale: float) -> bool:
        nonlocal probes
        probes += 1
        return meets_slo(scale)

    low, high = start_scale, start_scale
    if probe(start_scale):
        for _ in range(_MAX_DOUBLINGS):
            high = low * 2.0
            if not probe(high):
                break
            low = high
        else:
            return low, probes
    else:
        for _ in range(_MAX_DOUBLINGS):
            low = high / 2.0
            if probe(low):
                break
            high = low
        else:
            raise NoRateMeetsSloError("the cluster misses the SLO even at a tiny fraction of the trace's rate")
    while high / low > 1.0 + rel_tolerance:
        middle = math.sqrt(low * high)
        if probe(middle):
            low = middle
        else:
            high = middle
    return low, probes


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "joulescale"


class CapacityCache:
    """Capacities keyed by a hash of everything that changes them."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._memory: dict[str, dict[str, float]] = {}

    @staticmethod
    def key(configuration: dict[str, object]) -> str:
        return hashlib.sha256(json.dumps(configuration, sort_keys=True).encode()).hexdigest()[:24]

    def _path(self) -> Path | None:
        return self._directory / _CACHE_FILE if self._directory is not None else None

    def _read_file(self) -> dict[str, dict[str, float]]:
        path = self._path()
        if path is None or not path.exists():
            return {}
        try:  # bounded and regular files only: a cache is never worth a hang
            data = json.loads(read_bounded_text(path, _MAX_CACHE_BYTES))
        except (OSError, ValueError, RecursionError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Capacity | None:
        entry = self._memory.get(key) or self._read_file().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            scale, rate = float(entry["rate_scale"]), float(entry["requests_per_second"])
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        if not (0 < scale < math.inf and 0 <= rate < math.inf):
            return None  # a corrupted entry is a miss, not a run at a NaN rate
        requests, window = entry.get("window_requests", 0), entry.get("window_s", 0.0)
        if not isinstance(requests, int | float) or not isinstance(window, int | float):
            requests, window = 0, 0.0
        return Capacity(scale, rate, 0, cached=True, window_requests=int(requests), window_s=float(window))

    def put(self, key: str, capacity: Capacity) -> None:
        entry = {"rate_scale": capacity.rate_scale, "requests_per_second": capacity.requests_per_second,
                 "window_requests": capacity.window_requests, "window_s": capacity.window_s}
        self._memory[key] = entry
        path = self._path()
        if path is None:
            return
        data = self._read_file()
        data[key] = entry
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            return  # a read-only home only costs a new search next time
