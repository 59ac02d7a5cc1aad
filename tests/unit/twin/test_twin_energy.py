"""Energy behaviour: the U-shape over static clocks and the oracle bound against real policies."""

from __future__ import annotations

import itertools

from joulescale.control.policy import Slo
from joulescale.engines.observation import Phase
from joulescale.twin.metrics import summarise
from joulescale.twin.oracle import oracle_bound, run_bound
from joulescale.twin.policies import policy_names, policy_run_setup
from joulescale.twin.simulator import RunResult, simulate
from joulescale.twin.traces import load_trace, scaled_window

from .helpers import fixed_control, profile, small_cluster

SLO = Slo(600.0, 100.0, 99)


def test_prefill_energy_per_token_over_static_clocks_is_u_shaped() -> None:
    window = scaled_window(load_trace("azure-code"), 2.0, 30.0)
    clocks = [600, 900, 1200, 1400, 1600, 1800, 1980]
    per_token = []
    for mhz in clocks:
        result = simulate(window, small_cluster(2, 1), fixed_control(mhz, 1980))
        busy_j = sum(p.gpu.busy_energy_j for p in result.prefill)
        per_token.append(busy_j / sum(r.prompt_tokens for r in window))
    lowest = per_token.index(min(per_token))
    assert 0 < lowest < len(clocks) - 1
    assert all(a > b for a, b in itertools.pairwise(per_token[: lowest + 1]))
    assert all(a < b for a, b in itertools.pairwise(per_token[lowest:]))


def _policy_runs() -> dict[str, RunResult]:
    window = scaled_window(load_trace("azure-conv"), 2.5, 30.0)
    cluster = small_cluster(3, 1)
    runs = {}
    for name in policy_names():
        static: dict[Phase, int] | None = {"prefill": 1410, "decode": 900} if name == "static-best" else None
        setup = policy_run_setup(name, cluster, SLO, None, static)
        runs[name] = simulate(window, setup.cluster, setup.control)
    return runs


def test_oracle_is_below_every_policy_in_each_phase() -> None:
    runs = _policy_runs()
    clocks = profile().supported_sm_clocks_mhz
    horizon = max(r.end_s for r in runs.values())
    bound = oracle_bound(runs, clocks, horizon)
    assert oracle_bound(runs, clocks).total_j <= min(summarise(r, SLO).total_j for r in runs.values())
    for name, result in runs.items():
        summary = summarise(result, SLO, horizon)
        assert bound.prefill_j <= summary.prefill.total_j, name
        assert bound.decode_j <= summary.decode.total_j, name
        own_prefill, own_decode = run_bound(result, clocks, horizon)
        assert own_prefill <= summary.prefill.total_j, name
        assert own_decode <= summary.decode.total_j, name
    static_max = summarise(runs["static-max"], SLO, horizon)
    assert bound.total_j < static_max.total_j * 0.95  # static-max is far from the bound


def test_oracle_of_a_run_at_its_best_clock_matches_that_runs_busy_energy_shape() -> None:
    window = scaled_window(load_trace("azure-conv"), 1.0, 20.0)
    clocks = profile().supported_sm_clocks_mhz
    result = simulate(window, small_cluster(1, 1), fixed_control(1980, 1980))
    prefill, decode = run_bound(result, clocks)
    summary = summarise(result, SLO)
    # the bound only lowers the busy part: it stays above the idle floor of the same horizon
    assert summary.prefill.idle_j < prefill < summary.prefill.total_j
    assert summary.decode.idle_j < decode < summary.decode.total_j
