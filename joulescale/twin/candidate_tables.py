"""The planner's candidate tables, computed by the twin and cached on disk.

For each candidate (``joulescale.planning.candidates``) and a length mix: its capacity is the
highest Poisson rate at which one instance alone meets its phase's SLO percentile
(``instance_probe``), found by the same bracketing bisection as the cluster's capacity
(``capacity.find_capacity_scale``); its power is the mean instance power at 25, 50, 75 and 100 %
of that capacity, and idle. A line fitted to the loaded points gives the program's linear model:
``base_watts`` (intercept: a decode instance with any load steps continuously, far above idle)
and ``joules_per_request`` (slope).

Tables are cached per (profile content, engine, clock, phase, SLO, length mix, KV medium) like the
cluster capacities (``capacity.CapacityCache``'s file, its own key space), and a length mix is
already rounded to a bucket (``LengthMix``), so a planner interval whose mix drifted by less than a
bucket costs a dictionary look-up; a new bucket costs about a second per candidate here. A
candidate whose KV cache cannot hold the mix's longest prompt (prefill) or longest request
(decode) has no capacity on it: vLLM refuses such a request, and the twin refuses such a trace.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from joulescale.control.policy import Slo
from joulescale.engines.observation import Phase
from joulescale.inputfile import read_bounded_text
from joulescale.planning.candidates import Candidate, CandidateTable, enumerate_candidates
from joulescale.planning.forecast import LengthMix
from joulescale.profiles.model import GpuProfile
from joulescale.twin.capacity import NoRateMeetsSloError, find_capacity_scale, window_requests
from joulescale.twin.instance_probe import ProbeResult, probe
from joulescale.twin.kv_transfer import kv_medium

LOAD_SHARES = (0.25, 0.5, 0.75, 1.0)
PROBE_REQUESTS_MIN = 600
"""Requests per probe: at least ``window_requests(percentile)`` and this many (600 at P99 puts 5
requests above the percentile, as the cluster's capacity windows do)."""
STEADY_LIFETIMES = 4.0
"""A probe lasts at least this many request lifetimes (mean output x the TPOT target for decode,
the TTFT target for prefill), so a high rate is judged in steady state, not on the ramp from an
empty instance (600 requests arriving within a second would all fit one decode batch)."""
PROBE_REQUESTS_MAX = 50_000
_VERSION = 2
_FILE = "candidate_tables.json"
_MAX_CACHE_BYTES = 64 * 1024 * 1024


class TwinCandidateSource:
    """``CandidateSource`` over profiles, computed by one-instance probes and cached."""

    def __init__(self, profiles: Iterable[GpuProfile], model: str, cache_dir: Path | None = None,
                 engine: str = "vllm", medium: str = "infiniband", levels: int | None = None,
                 products: Iterable[str] | None = None) -> None:
        self._profiles = {p.name: p for p in profiles if p.model == model}
        kwargs = {} if levels is None else {"levels": levels}
        self._candidates = enumerate_candidates(self._profiles.values(), model, products=products, **kwargs)
        self._engine, self._medium = engine, kv_medium(medium)
        self._path = None if cache_dir is None else cache_dir / _FILE
        self._memory: dict[str, dict[str, object]] = {}
        self.computed = 0
        """Tables computed (not found in a cache) since construction."""

    def candidates(self) -> Sequence[Candidate]:
        return self._candidates

    def tables(self, mix: LengthMix, slo: Slo) -> list[CandidateTable]:
        stored = self._read()
        tables, fresh = [], False
        for candidate in self._candidates:
            key = self._key(candidate, mix, slo)
            found = self._memory.get(key) or stored.get(key)
            table = _from_entry(candidate, found) if isinstance(found, dict) else None
            if table is None:
                table = self._compute(candidate, mix, slo)
                self.computed += 1
                fresh = True
            self._memory[key] = _to_entry(table)
            tables.append(table)
        if fresh:
            self._write()
        return tables

    def _key(self, candidate: Candidate, mix: LengthMix, slo: Slo) -> str:
        profile = self._profiles[candidate.profile]
        physics = hashlib.sha256(profile.model_dump_json().encode()).hexdigest()[:16]
        configuration = {"version": _VERSION, "physics": physics, "engine": self._engine,
                         "phase": candidate.phase, "clock": candidate.base_clock_mhz, "mix": mix.key(),
                         "slo": [float(slo.ttft_ms), float(slo.tpot_ms), int(slo.percentile)], "medium": self._medium.name}
        return hashlib.sha256(json.dumps(configuration, sort_keys=True).encode()).hexdigest()[:24]

    def _compute(self, candidate: Candidate, mix: LengthMix, slo: Slo) -> CandidateTable:
        profile = self._profiles[candidate.profile]
        fewest = max(PROBE_REQUESTS_MIN, window_requests(slo.percentile))
        lifetime_s = (mix.mean_output_tokens * slo.tpot_ms if candidate.phase == "decode" else slo.ttft_ms) / 1000.0

        def run(phase: Phase, rate: float) -> ProbeResult:
            count = min(PROBE_REQUESTS_MAX, max(fewest, math.ceil(rate * STEADY_LIFETIMES * lifetime_s)))
            return probe(phase, profile, candidate.base_clock_mhz, mix, slo, rate, count, self._medium)

        idle = profile.tensor_parallel_size * profile.idle_power_watts
        longest = mix.longest_prompt_tokens if candidate.phase == "prefill" else mix.longest_request_tokens
        if profile.kv_capacity_tokens < longest:  # vLLM would refuse the longest request
            return CandidateTable(candidate, 0.0, idle, idle, 0.0, ((0.0, idle),))
        try:
            capacity, _ = find_capacity_scale(lambda rate: run(candidate.phase, rate).met_slo, start_scale=1.0)
        except NoRateMeetsSloError:
            return CandidateTable(candidate, 0.0, idle, idle, 0.0, ((0.0, idle),))
        points = [(share, run(candidate.phase, share * capacity).mean_watts) for share in LOAD_SHARES]
        base, slope = _line([share * capacity for share, _ in points], [w for _, w in points])
        if slope < 0.0:  # flat within noise: the mean of the points, no slope
            base, slope = sum(w for _, w in points) / len(points), 0.0
        return CandidateTable(candidate, capacity, idle, max(base, idle), slope, ((0.0, idle), *points))

    def _read(self) -> dict[str, object]:
        if self._path is None or not self._path.exists():
            return {}
        try:  # bounded and regular files only, as the capacity cache: a cache is never worth a hang
            data = json.loads(read_bounded_text(self._path, _MAX_CACHE_BYTES))
        except (OSError, ValueError, RecursionError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self) -> None:
        if self._path is None:
            return
        data = self._read()
        data.update(self._memory)
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
            tmp.replace(self._path)
        except OSError:
            return  # a read-only home only costs recomputing next time


def _line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread > 0 else 0.0
    return mean_y - slope * mean_x, slope


def _to_entry(table: CandidateTable) -> dict[str, object]:
    return {"capacity_rps": table.capacity_rps, "idle_watts": table.idle_watts, "base_watts": table.base_watts,
            "joules_per_request": table.joules_per_request, "power_by_share": [list(p) for p in table.power_by_share]}


def _from_entry(candidate: Candidate, entry: dict[str, object]) -> CandidateTable | None:
    """A cached table, or None for a corrupt entry (recomputed, never trusted)."""
    try:
        numbers = [float(entry[k]) for k in ("capacity_rps", "idle_watts", "base_watts", "joules_per_request")]  # type: ignore[arg-type]
        shares = tuple((float(s), float(w)) for s, w in entry["power_by_share"])  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(n) and n >= 0 for n in numbers):
        return None
    return CandidateTable(candidate, numbers[0], numbers[1], numbers[2], numbers[3], shares)
