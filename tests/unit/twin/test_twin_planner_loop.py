"""The planner in the twin's loop, and ``twin compare --planner``'s four baselines.

The candidate tables here are a double (capacity in proportion to GPUs and clock): the twin's
own tables take about a second per candidate and mix and are plan-core's to test; these tests
hold the loop's plumbing: what the planner is shown, that its decisions are applied, and the
comparison's document.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from joulescale.cli import main
from joulescale.control.policy import Slo
from joulescale.planning import (
    Allocation,
    Candidate,
    CandidateTable,
    LengthMix,
    Planner,
    PlannerSettings,
    enumerate_candidates,
)
from joulescale.planning import Placement as PlannedPlacement
from joulescale.profiles import shipped_catalog
from joulescale.profiles.model import GpuProfile
from joulescale.twin.cluster import ClusterConfig
from joulescale.twin.elastic import simulate_elastic
from joulescale.twin.metrics import meets_slo, summarise
from joulescale.twin.planned_compare import (
    PLANNED_BASELINES,
    PlannedSettings,
    _slo_meeting_static,
    base_clock_control,
    compare_planned,
    peak_rate_rps,
    replay_window,
    size_distserve,
    to_json,
)
from joulescale.twin.planner_loop import PlannerScaler, target_of
from joulescale.twin.traces import TraceRequest, load_trace, synthetic_trace

SLO = Slo(ttft_ms=600.0, tpot_ms=100.0, percentile=99)
TP2, TP4 = "h100-sxm-llama-70b-tp2", "h100-sxm-llama-70b-tp4"


class ProportionalSource:
    """Candidate tables in proportion to GPUs and clock (a double of the twin's probes)."""

    def __init__(self, optimism: float = 1.0, names: tuple[str, ...] = (TP2, TP4)) -> None:
        self.optimism = optimism
        catalog = shipped_catalog()
        self.profiles: dict[str, GpuProfile] = {name: catalog.get(name) for name in names}
        self._candidates = enumerate_candidates(self.profiles.values(), self.profiles[TP4].model)
        self.asked: list[LengthMix] = []

    def candidates(self) -> Sequence[Candidate]:
        return self._candidates

    def tables(self, mix: LengthMix, slo: Slo) -> list[CandidateTable]:
        self.asked.append(mix)
        out = []
        for c in self._candidates:
            profile = self.profiles[c.profile]
            share = c.base_clock_mhz / profile.max_sm_clock_mhz
            capacity = (0.5 if c.phase == "prefill" else 2.0) * c.gpus * share * self.optimism
            idle = c.gpus * profile.idle_power_watts
            out.append(CandidateTable(c, capacity, idle, idle, 400.0 * share * share * c.gpus, ((0.0, idle),)))
        return out


def _rising() -> list[TraceRequest]:
    """1 req/s for 240 s, then 5 req/s for 360 s."""
    calm = synthetic_trace(1.0, 240.0, 900, 120, seed=5).requests
    busy = synthetic_trace(5.0, 360.0, 900, 120, seed=6).requests
    return [*calm, *(TraceRequest(r.arrival_s + 240.0, r.prompt_tokens, r.output_tokens) for r in busy)]


def test_the_loop_shows_the_planner_what_arrived_and_applies_each_changed_decision() -> None:
    source = ProportionalSource()
    profile = source.profiles[TP4]
    requests = _rising()
    cluster = ClusterConfig(profile, 1, 1)
    start = PlannedPlacement.of([Allocation(c, 1) for c in source.candidates()
                                 if c.profile == TP4 and c.base_clock_mhz == profile.max_sm_clock_mhz])
    settings = PlannerSettings(SLO, {profile.gpu_product: 16}, interval_s=60.0, startup_s=30.0)
    scaler = PlannerScaler(Planner(settings, source), start)
    first = target_of(start)[0]
    result = simulate_elastic(requests, cluster, base_clock_control("joulescale", cluster, SLO), scaler, 30.0,
                              {"prefill": first.prefill_base_mhz, "decode": first.decode_base_mhz})
    assert [w.end_s for w in scaler.windows][:3] == [60.0, 120.0, 180.0]
    for window in scaler.windows:
        assert window.arrivals == sum(1 for r in requests if window.start_s < r.arrival_s <= window.end_s)
    # Each decision that changes the role-level target (replicas, profile, base clock) is applied then.
    expected, running = [], target_of(start)[0]
    for decision in scaler.decisions:
        wanted = target_of(decision.placement)[0]
        if wanted != running:
            expected.append((decision.now_s, wanted))
            running = wanted
    assert expected, "the load rose fivefold: the planner must have added replicas"
    assert result.plans == expected
    last = result.plans[-1][1]
    for phase in ("prefill", "decode"):
        kept = [t for t in result.tenures if t.phase == phase and t.drain_s is None]
        assert len(kept) == last.replicas(phase)
        assert {t.profile for t in kept} == {last.profile(phase)}
    assert all(r.finish_s >= 0 for r in result.requests)


def test_an_infeasible_interval_keeps_the_running_replicas_and_says_why() -> None:
    # 5 req/s needs 6 req/s of prefill (12 GPUs of TP4 at f_max) on an 8-GPU budget: every
    # interval is infeasible; the loop must neither shrink nor reshape what runs.
    source = ProportionalSource()
    profile = source.profiles[TP4]
    requests = synthetic_trace(5.0, 300.0, 900, 120, seed=7).requests
    cluster = ClusterConfig(profile, 1, 1)
    start = PlannedPlacement.of([Allocation(c, 1) for c in source.candidates()
                                 if c.profile == TP4 and c.base_clock_mhz == profile.max_sm_clock_mhz])
    settings = PlannerSettings(SLO, {profile.gpu_product: 8}, interval_s=60.0, startup_s=30.0)
    scaler = PlannerScaler(Planner(settings, source), start)
    first = target_of(start)[0]
    result = simulate_elastic(requests, cluster, base_clock_control("joulescale", cluster, SLO), scaler, 30.0,
                              {"prefill": first.prefill_base_mhz, "decode": first.decode_base_mhz},
                              gpu_budget=8)
    assert len(scaler.decisions) >= 3
    assert all(d.infeasible is not None and d.placement == start for d in scaler.decisions)
    assert all("infeasible (gpu-budget)" in d.reason for d in scaler.decisions)
    assert result.plans == []
    assert all(t.drain_s is None for t in result.tenures)


def test_a_mixed_role_keeps_its_gpus_on_the_largest_allocations_profile() -> None:
    source = ProportionalSource()
    by = {(c.phase, c.profile, c.base_clock_mhz): c for c in source.candidates()}
    top = source.profiles[TP4].max_sm_clock_mhz
    low = min(m for p, name, m in by if name == TP2 and p == "prefill")
    placement = PlannedPlacement.of([Allocation(by[("prefill", TP2, low)], 2), Allocation(by[("prefill", TP4, top)], 1),
                                     Allocation(by[("decode", TP4, top)], 1)])
    target, mixed = target_of(placement)
    assert mixed
    assert (target.prefill, target.prefill_profile, target.prefill_base_mhz) == (2, TP4, top)
    assert (target.decode, target.decode_profile) == (1, TP4)


def test_compare_planner_runs_the_four_baselines_into_one_document() -> None:
    settings = PlannedSettings(window="duration", duration_s=360.0, rate_scale=0.5, interval_s=60.0, startup_s=30.0)
    doc = to_json(compare_planned(settings, source=ProportionalSource()))
    policies = doc["policies"]
    assert isinstance(policies, dict)
    assert tuple(policies) == PLANNED_BASELINES
    for name, entry in policies.items():
        energy = entry["energy_j"]
        assert energy["total"] == pytest.approx(energy["prefill"] + energy["decode"]), name
        assert 0.0 <= entry["slo_attainment"] <= 1.0
        assert entry["gpus"]["gpu_seconds_held"] > 0.0
        assert entry["gpus"]["gpu_seconds_given_back"] >= 0.0
    assert policies["distserve"]["plan_changes"] == 0
    assert all("planner" in policies[name] for name in PLANNED_BASELINES[1:])
    savings, tiers = doc["savings_vs_distserve"], doc["tiers"]
    assert isinstance(savings, dict)
    assert isinstance(tiers, dict)
    for phase in ("prefill", "decode", "total"):  # the tiers add up to the saving
        assert tiers["placement"][phase] + tiers["clocks_joulescale"][phase] == pytest.approx(
            savings["joulescale"][phase])
    forecast = doc["forecast_error"]
    assert isinstance(forecast, dict)
    assert set(forecast) >= {"last-window", "ewma-upper", "vs_burst"}
    assert set(forecast["vs_burst"]) == {"last-window", "ewma-upper", "last-window+memory", "ewma-upper+memory"}


@pytest.mark.parametrize(("extra", "message"), [
    (["--slo-ttft-ms", "auto"], "SLO in ms"),
    (["--view", "rich"], "metrics view"),
])
def test_compare_planner_refuses_what_production_cannot_plan(extra: list[str], message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["twin", "compare", "--planner", *extra], out, err) == 2
    assert message in err.getvalue()


@pytest.mark.parametrize("rows", [["2023-11-16 18:15:46.6805900,100,3"],
                                  ["2023-11-16 18:15:46.6805900,100,3", "2023-11-16 18:15:46.6805900,200,5"]])
@pytest.mark.parametrize("rate", [[], ["--rate", "1"]])
def test_compare_planner_refuses_a_trace_without_a_rate_of_its_own(tmp_path: Path, rows: list[str],
                                                                   rate: list[str]) -> None:
    """One request, or all at one instant: refused as plain ``twin compare`` and ``plan`` refuse it."""
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(["twin", "compare", "--planner", "--trace", str(trace), "--cache-dir", str(tmp_path), *rate], out, err)
    assert code == 2
    assert "arrive at one instant" in err.getvalue()
    assert out.getvalue() == ""


def test_distserve_is_raised_until_its_replay_meets_the_slo_when_the_tables_are_optimistic() -> None:
    source = ProportionalSource(optimism=4.0, names=(TP4,))  # it claims 4 x what an instance holds
    settings = PlannedSettings(window="duration", duration_s=240.0, rate_scale=1.0, interval_s=60.0, startup_s=30.0)
    requests = replay_window(load_trace(settings.trace), settings)[0]
    tables = [t for t in source.tables(LengthMix.of([1000], [100]), SLO)
              if t.candidate.base_clock_mhz == source.profiles[t.candidate.profile].max_sm_clock_mhz]
    first, _, _ = size_distserve(tables, peak_rate_rps(requests, 60.0), settings, source.profiles[TP4].gpu_product)
    target, note, replay = _slo_meeting_static(requests, tables, peak_rate_rps(requests, 60.0), settings,
                                               source.profiles, source.profiles[TP4].gpu_product)
    assert first.prefill + first.decode < target.prefill + target.decode, "the first sizing was too small"
    assert "raised" in note
    assert meets_slo(summarise(replay, SLO), SLO)
