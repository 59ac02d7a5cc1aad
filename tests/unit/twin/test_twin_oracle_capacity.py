"""The oracle bound and the capacity search, on hand-checked and generated cases."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from joulescale.control.policy import Slo
from joulescale.twin.capacity import Capacity, CapacityCache, find_capacity_scale
from joulescale.twin.metrics import summarise
from joulescale.twin.oracle import oracle_bound, run_bound
from joulescale.twin.simulator import RunResult, simulate
from joulescale.twin.traces import load_trace, scaled_window

from .helpers import alternating_control, fixed_control, profile, small_cluster

SLO = Slo(600.0, 100.0, 99)
TOP = profile().max_sm_clock_mhz


@pytest.fixture(scope="module")
def runs() -> dict[str, RunResult]:
    window = scaled_window(load_trace("azure-conv"), 2.0, 15.0)
    cluster = small_cluster(2, 1)
    return {
        "top": simulate(window, cluster, fixed_control(TOP, TOP)),
        "low": simulate(window, cluster, fixed_control(1110, 810)),
        "alternating": simulate(window, cluster, alternating_control(705, TOP)),
    }


def test_restricted_to_the_one_clock_a_run_used_the_bound_is_that_runs_energy(runs: dict[str, RunResult]) -> None:
    """The oracle and the twin book energy the same way: with a single allowed clock, the best
    clock of every iteration is the one it ran at, so the bound equals the run's energy."""
    result = runs["top"]
    summary = summarise(result, SLO, result.end_s + 3.0)
    prefill, decode = run_bound(result, [TOP], result.end_s + 3.0)
    assert prefill == pytest.approx(summary.prefill.total_j, rel=1e-9)
    assert decode == pytest.approx(summary.decode.total_j, rel=1e-9)


def test_the_bound_of_each_run_is_below_its_energy_with_any_set_of_clocks(runs: dict[str, RunResult]) -> None:
    """Any set holding the clocks the run used; also for a run whose clock changes inside
    iterations (part of an iteration at each clock)."""
    clocks = profile().supported_sm_clocks_mhz
    horizon = max(r.end_s for r in runs.values())
    for name, result in runs.items():
        summary = summarise(result, SLO, horizon)
        used = {mhz for gpu in result.gpus for mhz in gpu.time_at_clock_s}
        for allowed in (clocks, sorted(used), sorted(used | {345, 1500}), sorted(used | set(clocks[::7]))):
            prefill, decode = run_bound(result, allowed, horizon)
            assert prefill <= summary.prefill.total_j * (1 + 1e-12), (name, len(allowed))
            assert decode <= summary.decode.total_j * (1 + 1e-12), (name, len(allowed))
        # more freedom never raises the bound
        wide, narrow = run_bound(result, clocks, horizon), run_bound(result, [TOP], horizon)
        assert wide[0] <= narrow[0]
        assert wide[1] <= narrow[1]


def test_the_oracle_takes_the_smallest_bound_of_each_phase_and_names_its_run(runs: dict[str, RunResult]) -> None:
    clocks = profile().supported_sm_clocks_mhz
    horizon = max(r.end_s for r in runs.values())
    bounds = {name: run_bound(result, clocks, horizon) for name, result in runs.items()}
    oracle = oracle_bound(runs, clocks, horizon)
    assert oracle.prefill_j == min(b[0] for b in bounds.values())
    assert oracle.decode_j == min(b[1] for b in bounds.values())
    assert bounds[oracle.prefill_source][0] == oracle.prefill_j
    assert bounds[oracle.decode_source][1] == oracle.decode_j
    assert oracle.total_j == oracle.prefill_j + oracle.decode_j
    for result in runs.values():
        assert oracle.total_j <= summarise(result, SLO, horizon).total_j
    # by default the horizon is the shortest run's end, below every run's own horizon
    assert oracle_bound(runs, clocks).total_j <= oracle.total_j
    with pytest.raises(ValueError, match="at least one"):
        oracle_bound({}, clocks)


def test_the_bound_keeps_the_idle_floor_of_the_horizon(runs: dict[str, RunResult]) -> None:
    """SLOs relaxed, the bound still pays idle power for every GPU over the whole horizon."""
    result = runs["low"]
    p = profile()
    horizon = result.end_s + 100.0
    prefill, decode = run_bound(result, p.supported_sm_clocks_mhz, horizon)
    idle_per_instance = p.tensor_parallel_size * p.idle_power_watts * horizon
    assert prefill > len(result.prefill) * idle_per_instance
    assert decode > len(result.decode) * idle_per_instance


@settings(max_examples=60, deadline=None)
@given(threshold=st.floats(0.01, 500.0), tolerance=st.floats(0.005, 0.2), start=st.floats(0.05, 20.0))
def test_the_capacity_search_brackets_the_slo_boundary(threshold: float, tolerance: float, start: float) -> None:
    """Against any monotone SLO test: the answer meets the SLO, and one tolerance step above it
    does not; every probe is counted."""
    assume(threshold < start * 2.0**12)  # above, the search stops doubling (the next test)
    probed: list[float] = []

    def meets(scale: float) -> bool:
        probed.append(scale)
        return scale <= threshold

    scale, probes = find_capacity_scale(meets, start_scale=start, rel_tolerance=tolerance)
    assert probes == len(probed)
    assert scale in probed
    assert scale <= threshold
    assert scale * (1.0 + tolerance) > threshold
    assert any(threshold < p <= scale * (1.0 + tolerance) * (1 + 1e-12) for p in probed)  # the upper bracket


def test_the_capacity_search_stops_doubling_after_twelve_times() -> None:
    probed: list[float] = []
    scale, probes = find_capacity_scale(lambda s: probed.append(s) is None, start_scale=1.0)
    assert scale == 2.0**12
    assert probes == len(probed) == 13


def test_a_corrupted_capacity_cache_is_a_miss_never_a_bad_rate(tmp_path: Path) -> None:
    key = CapacityCache.key({"trace": "abc"})
    (tmp_path / "capacity.json").write_text("{not json", encoding="utf-8")
    assert CapacityCache(tmp_path).get(key) is None
    for entry in ({"rate_scale": "NaN", "requests_per_second": 1.0}, {"rate_scale": 0.0, "requests_per_second": 1.0},
                  {"rate_scale": 1.0, "requests_per_second": -1.0}, {"rate_scale": 1.0}, [1, 2],
                  {"rate_scale": 1e400, "requests_per_second": 1.0}):
        (tmp_path / "capacity.json").write_text(json.dumps({key: entry}), encoding="utf-8")
        assert CapacityCache(tmp_path).get(key) is None, entry
    (tmp_path / "capacity.json").write_text(json.dumps([key]), encoding="utf-8")
    assert CapacityCache(tmp_path).get(key) is None
    # a write over a corrupted file replaces it with a good one
    CapacityCache(tmp_path).put(key, Capacity(2.0, 4.0, 5))
    assert CapacityCache(tmp_path).get(key) == Capacity(2.0, 4.0, 0, cached=True)


def test_the_cache_key_depends_on_content_not_on_order() -> None:
    assert CapacityCache.key({"a": 1, "b": [1, 2]}) == CapacityCache.key({"b": [1, 2], "a": 1})
    assert CapacityCache.key({"a": 1, "b": [1, 2]}) != CapacityCache.key({"a": 1, "b": [2, 1]})
    assert CapacityCache.key({"a": 1.0}) != CapacityCache.key({"a": 1.5})


def test_an_unwritable_cache_directory_costs_only_a_new_search(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    cache = CapacityCache(blocker / "sub")  # a directory below a regular file cannot be made
    key = CapacityCache.key({"x": 1})
    cache.put(key, Capacity(1.5, 3.0, 4))
    assert cache.get(key) == Capacity(1.5, 3.0, 0, cached=True)  # still remembered in memory
    assert CapacityCache(blocker / "sub").get(key) is None
    assert not math.isnan(cache.get(key).rate_scale)  # type: ignore[union-attr]


def test_a_hostile_cache_file_is_a_miss_at_once_never_a_hang(tmp_path: Path) -> None:
    """A 200 MB sparse file, a named pipe (a read would block forever) and a directory in the
    cache file's place: each is a miss, and a put replaces the pipe with a regular file."""
    key = CapacityCache.key({"trace": "abc"})
    huge = tmp_path / "huge"
    huge.mkdir()
    with (huge / "capacity.json").open("wb") as handle:
        handle.truncate(200 * 1024 * 1024)
    assert CapacityCache(huge).get(key) is None
    pipe = tmp_path / "pipe"
    pipe.mkdir()
    os.mkfifo(pipe / "capacity.json")
    assert CapacityCache(pipe).get(key) is None
    CapacityCache(pipe).put(key, Capacity(2.0, 3.0, 1))
    assert (pipe / "capacity.json").is_file()
    assert CapacityCache(pipe).get(key) == Capacity(2.0, 3.0, 0, cached=True)
    folder = tmp_path / "folder"
    (folder / "capacity.json").mkdir(parents=True)
    assert CapacityCache(folder).get(key) is None
