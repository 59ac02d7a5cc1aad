"""The planner end to end on the twin's real candidate tables (H100 Llama-70B TP4 and TP8, one base clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from joulescale.control.policy import Slo
from joulescale.planning.placement import Placement
from joulescale.planning.planner import Planner
from joulescale.planning.settings import PlannerSettings
from joulescale.planning.window import TrafficWindow
from joulescale.profiles.catalog import shipped_catalog
from joulescale.twin.candidate_tables import TwinCandidateSource

MODEL = "meta-llama/Llama-3.3-70B-Instruct"
H100 = "NVIDIA-H100-80GB-HBM3"
SLO = Slo(ttft_ms=600.0, tpot_ms=100.0)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> TwinCandidateSource:
    catalog = shipped_catalog()
    profiles = [catalog.get(f"h100-sxm-llama-70b-tp{tp}") for tp in (4, 8)]
    return TwinCandidateSource(profiles, MODEL, tmp_path_factory.mktemp("tables"), levels=1)


def window(index: int, rate: float) -> TrafficWindow:
    count = round(rate * 300.0)
    prompts = tuple(400 + (i * 137) % 1800 for i in range(min(count, 400)))
    outputs = tuple(50 + (i * 61) % 400 for i in range(min(count, 400)))
    return TrafficWindow(index * 300.0, (index + 1) * 300.0, count, prompts, outputs)


def planner(source: TwinCandidateSource) -> Planner:
    return Planner(PlannerSettings(SLO, {H100: 32}), source)


def test_first_plan_scales_up_at_once_and_reports_power_and_headroom(source: TwinCandidateSource) -> None:
    decision = planner(source).plan(window(0, 4.0), Placement(), 300.0)
    assert decision.changed
    assert "at risk" in decision.reason
    assert decision.placement.replicas("prefill") >= 1
    assert decision.placement.replicas("decode") >= 1
    assert decision.placement.gpus <= 32
    assert all(h >= 0.2 - 1e-9 for h in decision.headroom.values())  # the margin
    assert decision.power_watts > 0
    assert decision.joules_per_token > 0


def test_a_drop_in_load_shrinks_only_after_two_intervals_and_never_below_the_load(source: TwinCandidateSource) -> None:
    plan = planner(source)
    busy = plan.plan(window(0, 8.0), Placement(), 300.0).placement
    first = plan.plan(window(1, 1.0), busy, 600.0)
    assert first.placement == busy
    assert not first.changed
    current = busy
    shrunk = None
    for i in range(2, 8):
        decision = plan.plan(window(i, 1.0), current, 300.0 * (i + 1))
        if decision.changed:
            shrunk = decision
            break
    assert shrunk is not None
    assert shrunk.placement.gpus < busy.gpus
    assert all(h >= 0.2 - 1e-9 for h in shrunk.headroom.values())


def test_a_burst_beyond_the_running_capacity_changes_at_once(source: TwinCandidateSource) -> None:
    plan = planner(source)
    small = plan.plan(window(0, 1.0), Placement(), 300.0).placement
    burst = plan.plan(window(1, 9.0), small, 600.0)
    assert burst.changed
    assert "at risk" in burst.reason
    assert burst.placement.gpus > small.gpus


def test_an_impossible_load_is_reported_not_raised_and_gets_the_most_the_budget_holds(
        source: TwinCandidateSource) -> None:
    decision = planner(source).plan(window(0, 200.0), Placement(), 300.0)
    assert decision.infeasible is not None
    assert decision.infeasible.binding == "gpu-budget"
    assert "infeasible" in decision.reason
    assert "the most the budget holds" in decision.reason
    assert decision.changed
    assert 24 < decision.placement.gpus <= 32  # all but a sliver of the budget, never over it


def test_tables_are_cached_on_disk(source: TwinCandidateSource, tmp_path: Path) -> None:
    catalog = shipped_catalog()
    profiles = [catalog.get(f"h100-sxm-llama-70b-tp{tp}") for tp in (4, 8)]
    first = TwinCandidateSource(profiles, MODEL, tmp_path, levels=1)
    forecast_mix = planner(first).forecaster
    forecast_mix.observe(window(0, 2.0))
    mix = forecast_mix.forecast()
    assert mix is not None
    tables = first.tables(mix.mix, SLO)
    again = TwinCandidateSource(profiles, MODEL, tmp_path, levels=1)
    assert again.tables(mix.mix, SLO) == tables
    assert first.computed == len(tables)
    assert again.computed == 0
