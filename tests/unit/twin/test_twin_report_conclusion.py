"""What a comparison concludes, on hand-set energies and attainments over one real comparison."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.twin.compare import Comparison, compare
from joulescale.twin.metrics import PhaseEnergy, RunSummary
from joulescale.twin.oracle import OracleBound
from joulescale.twin.report import (
    BASELINE,
    SLO_TOLERANCE_POINTS,
    conclusion,
    preamble,
    savings,
    slo_holding,
    slo_verdict,
    table,
    to_json,
)
from joulescale.twin.settings import CompareSettings

NAMES = ("static-max", "static-best", "voltana", "biscale", "joulescale")


@pytest.fixture(scope="module")
def real() -> Comparison:
    return compare(CompareSettings(trace="azure-conv", duration_s=10.0, gpus=8, prefill_instances=1,
                                   policies=("static-max", "joulescale", "oracle")))


def _summary(prefill_j: float, decode_j: float, attainment: float, tokens: int = 1000) -> RunSummary:
    return RunSummary(
        requests=200, finished=200, output_tokens=tokens, duration_s=10.0,
        prefill=PhaseEnergy(prefill_j * 0.6, prefill_j * 0.4), decode=PhaseEnergy(decode_j * 0.7, decode_j * 0.3),
        ttft_ms_at_percentile=400.0, tpot_ms_at_percentile=80.0, ttft_attainment=attainment,
        tpot_attainment=attainment, slo_attainment=attainment, clock_changes_per_second=0.5, preemptions=0,
        time_at_clock_s={"prefill": {1980: 1.0}, "decode": {1980: 2.0}})


def _set(real: Comparison, summaries: dict[str, RunSummary], oracle: OracleBound | None = None) -> Comparison:
    policies = (*summaries, *(["oracle"] if oracle else []))
    return replace(real, settings=replace(real.settings, policies=policies), summaries=summaries, oracle=oracle)


def test_savings_and_the_conclusion_are_computed_per_phase_and_in_total(real: Comparison) -> None:
    comparison = _set(real, {"static-max": _summary(100.0, 300.0, 0.995), "joulescale": _summary(80.0, 150.0, 0.99)},
                      OracleBound(50.0, 150.0, "joulescale", "static-max"))
    assert savings(comparison, "joulescale") == pytest.approx({"prefill": 0.2, "decode": 0.5, "total": 0.425})
    assert savings(comparison, "voltana") is None
    assert conclusion(comparison) == (
        "joulescale uses 42.5% less energy than static-max (prefill 20.0%, decode 50.0%) at 99.00% SLO attainment "
        "(static-max 99.50%); it is 15.0% above the oracle bound.")
    doc = to_json(comparison)
    assert doc["joulescale_saving_vs_static_max"] == pytest.approx({"prefill": 0.2, "decode": 0.5, "total": 0.425})
    assert doc["joulescale_gap_to_oracle"] == pytest.approx(0.15)
    oracle = doc["policies"]["oracle"]  # type: ignore[index]
    assert oracle["energy_j"] == {"prefill": 50.0, "decode": 150.0, "total": 200.0}
    assert oracle["joules_per_output_token"] == pytest.approx(0.2)
    assert oracle["bound_from_runs"] == {"prefill": "joulescale", "decode": "static-max"}


def test_without_joulescale_or_the_baseline_the_conclusion_says_what_to_add(real: Comparison) -> None:
    only_max = _set(real, {"static-max": _summary(100.0, 300.0, 0.995)})
    assert conclusion(only_max).startswith("(include static-max and joulescale")
    assert "joulescale_saving_vs_static_max" not in to_json(only_max)
    only_ours = _set(real, {"joulescale": _summary(80.0, 150.0, 0.99)})
    assert conclusion(only_ours).startswith("(include static-max and joulescale")
    assert slo_holding(only_ours) is None
    assert slo_verdict(only_ours) == ""
    assert "slo_holding" not in to_json(only_ours)


def test_the_table_lists_the_policies_in_the_order_asked_with_the_change_against_static_max(real: Comparison) -> None:
    comparison = _set(real, {"joulescale": _summary(80.0, 150.0, 0.99), "static-max": _summary(100.0, 300.0, 0.995)},
                      OracleBound(50.0, 150.0, "joulescale", "joulescale"))
    lines = table(comparison).splitlines()
    assert [line.split()[0] for line in lines] == ["policy", "joulescale", "static-max", "oracle"]
    ours, base, oracle = (line.split() for line in lines[1:])
    assert ours[1:6] == ["0.1", "0.1", "0.2", "0.23", "-42.5%"]  # kJ, kJ, kJ, J/token, vs max
    assert base[5] == "+0.0%"
    assert ours[8] == "99.00"
    assert base[8] == "99.50"
    assert oracle[:2] == ["oracle", "(bound)"]
    assert oracle[6] == "-50.0%"
    assert len({len(line) for line in lines}) == 1  # columns aligned


def test_nan_figures_print_as_a_dash(real: Comparison) -> None:
    empty = replace(_summary(100.0, 300.0, math.nan, tokens=0), ttft_ms_at_percentile=math.nan)
    comparison = _set(real, {"static-max": empty})
    row = table(comparison).splitlines()[1].split()
    assert row[4] == "-"
    assert row[6] == "-"
    assert row[8] == "-"


def test_no_policy_holding_the_slo_is_said_so(real: Comparison) -> None:
    comparison = _set(real, {"static-max": _summary(100.0, 300.0, 0.995), "joulescale": _summary(80.0, 150.0, 0.98)})
    assert slo_holding(comparison) == ([], ["joulescale"])
    line = slo_verdict(comparison)
    assert line.startswith(f"Within {SLO_TOLERANCE_POINTS} points of static-max's SLO attainment, no adaptive policy holds")
    assert "below it: joulescale (0.2 kJ at 98.00%)" in line


@settings(max_examples=40, deadline=None)
@given(energies=st.lists(st.floats(10.0, 1e4), min_size=5, max_size=5, unique=True),
       attainments=st.lists(st.sampled_from((0.97, 0.985, 0.9899, 0.99, 0.9901, 0.995, 1.0)), min_size=5, max_size=5))
def test_the_verdict_names_the_cheapest_policy_within_the_tolerance_of_static_max(
        real: Comparison, energies: list[float], attainments: list[float]) -> None:
    summaries = {name: _summary(j * 0.25, j * 0.75, a) for name, j, a in zip(NAMES, energies, attainments, strict=True)}
    comparison = _set(real, summaries)
    floor = summaries[BASELINE].slo_attainment - SLO_TOLERANCE_POINTS / 100.0
    holding = [n for n in NAMES[1:] if summaries[n].slo_attainment >= floor]
    verdict = slo_holding(comparison)
    assert verdict is not None
    assert set(verdict[0]) == set(holding)
    assert set(verdict[1]) == set(NAMES[1:]) - set(holding)
    assert [summaries[n].total_j for n in verdict[0]] == sorted(summaries[n].total_j for n in holding)
    line = slo_verdict(comparison)
    if holding:
        cheapest = min(holding, key=lambda n: summaries[n].total_j)
        assert f"the least energy is {cheapest}'s" in line
    else:
        assert "no adaptive policy holds" in line


def test_a_real_comparison_reports_itself_consistently(real: Comparison) -> None:
    doc = to_json(real)
    config = doc["config"]
    assert isinstance(config, dict)
    assert config["requests"] == len(real.requests) > 0
    assert config["rate_scale"] == pytest.approx(real.settings.load * real.capacity.rate_scale)
    assert doc["requests_per_second"] == pytest.approx(real.rate_scale * real.trace.requests_per_second)
    assert config["gpus"] == 8
    assert config["prefill_instances"] == 1
    assert config["decode_instances"] == 1
    policies = doc["policies"]
    assert isinstance(policies, dict)
    assert list(policies) == ["static-max", "joulescale", "oracle"]
    for name in ("static-max", "joulescale"):
        assert policies[name]["energy_j"]["total"] >= policies["oracle"]["energy_j"]["total"]
        assert policies[name]["duration_s"] == policies["static-max"]["duration_s"]  # one common horizon
    saving = doc["joulescale_saving_vs_static_max"]
    assert isinstance(saving, dict)
    assert f"{saving['total'] * 100:.1f}% less energy" in conclusion(real)


@pytest.mark.parametrize("trace", ["azure-conv", "azure-code"])
def test_every_policy_serves_the_same_window_and_the_oracle_is_below_each_phase(trace: str) -> None:
    """All the default policies on a small cluster: one window, one horizon, every request served,
    and the oracle bound under each policy's energy phase by phase."""
    full = compare(CompareSettings(trace=trace, duration_s=20.0, gpus=8, prefill_instances=1))
    assert full.oracle is not None
    assert list(full.summaries) == list(NAMES)
    horizon = max(r.end_s for r in full.runs.values())
    for name, summary in full.summaries.items():
        assert summary.requests == summary.finished == len(full.requests), name
        assert summary.duration_s == horizon, name
        assert full.oracle.prefill_j <= summary.prefill.total_j, name
        assert full.oracle.decode_j <= summary.decode.total_j, name
    assert full.oracle.prefill_source in NAMES
    assert full.oracle.decode_source in NAMES
    allowed = full.cluster.profile.supported_sm_clocks_mhz
    assert set(full.static_best_mhz) == {"prefill", "decode"}
    assert all(mhz in allowed for mhz in full.static_best_mhz.values())
    # static-best holds its clocks: its GPUs spend their busy time at them once settled
    best = full.runs["static-best"]
    for phase, instances in (("prefill", best.prefill), ("decode", best.decode)):
        clocks = {mhz for inst in instances for mhz, seconds in inst.gpu.time_at_clock_s.items() if seconds > 0}
        assert clocks <= {full.static_best_mhz[phase], full.cluster.profile.max_sm_clock_mhz}, phase  # type: ignore[index]


def test_the_plots_are_png_files_of_the_comparison(real: Comparison, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from joulescale.twin.plots import render_plots, write_plots

    written = write_plots(render_plots(real), tmp_path / "plots")
    assert sorted(p.name for p in written) == ["clock_over_time.png", "energy_by_phase.png", "energy_vs_slo.png",
                                                "time_at_clock.png", "tpot_ccdf.png", "ttft_ccdf.png"]
    from matplotlib import image

    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path.name
        pixels = image.imread(path)[..., :3]
        coloured = (abs(pixels[..., 0] - pixels[..., 1]) + abs(pixels[..., 1] - pixels[..., 2]) > 0.2).sum()
        assert coloured > 500, path.name  # series were drawn: empty axes are black on white


def test_the_preamble_states_the_window_the_load_and_the_cluster(real: Comparison) -> None:
    text = preamble(real)
    first, rate, capacity, cluster = text.splitlines()
    assert first.startswith(f"trace azure-conv: 10 s simulated window (--duration), {len(real.requests)} requests ")
    assert rate.startswith(f"rate: trace {real.trace.requests_per_second:.3g} req/s native; replayed at ")
    assert "= load 0.67 x static-max capacity" in rate
    assert capacity.startswith(f"capacity: {real.capacity.requests_per_second:.3g} req/s at static-max, measured")
    assert "(cached)" not in capacity
    assert "cluster: 8 GPUs, 1 prefill (TP4) + 1 decode (TP4) instances, h100-sxm-llama-70b-tp4" in cluster
    assert "KV over infiniband; SLO P99 TTFT 600 ms / TPOT 100 ms; policy view: metrics" in cluster
    assert "vllm /metrics scraped every 50 ms + 10 ms delay" in cluster
    cached = replace(real, capacity=replace(real.capacity, cached=True))
    assert "at static-max (cached)" in preamble(cached).splitlines()[2]
