"""One planning pass: what it writes from fresh data, and how it behaves on faults.

The metrics source answers from canned vectors keyed by the loop's own PromQL (promql.py), and
the planner is a seam that returns a set choice; the core planner is exercised by
test_planloop_core_planner.py and the real Prometheus by the integration tier.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from joulescale.api import EnergyAwareLLMServiceSpec
from joulescale.profiles import shipped_catalog
from joulescale_operator.planloop.loop import CurrentState, PlanChoice, PlanningFailed, PlanPass
from joulescale_operator.planloop.observation import ServiceObservation
from joulescale_operator.planloop.promql import service_queries
from joulescale_operator.planloop.source import MetricsUnavailable, Sample

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
INTERVAL = 60


def body(status: dict[str, Any] | None = None) -> dict[str, Any]:
    autoscaled = {"minReplicas": 1, "maxReplicas": 6}
    return {
        "metadata": {"name": "llama", "namespace": "ns", "generation": 3, "resourceVersion": "7"},
        "spec": {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
            "engine": {"image": "vllm/vllm-openai:v0.11.0"},
            "prefill": {"autoscaling": autoscaled, "tensorParallelSize": 1, "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}},
            "decode": {"autoscaling": autoscaled, "tensorParallelSize": 1, "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}},
            "slo": {"ttftMs": 500, "tpotMs": 50},  # edges of vLLM's buckets (counted exactly)
            "energy": {"planner": {"intervalSeconds": INTERVAL}},
        },
        "status": status or {"prefill": {"replicas": 2, "readyReplicas": 2}, "decode": {"replicas": 3, "readyReplicas": 3}},
    }


def healthy_metrics(
    requests: float = 600.0, reporting: tuple[int, int] = (2, 3), namespace: str = "ns", name: str = "llama"
) -> dict[str, list[Sample]]:
    q = service_queries("vllm", namespace, name, INTERVAL)
    assert q is not None
    by_role = lambda p, d: [({"role": "prefill"}, p), ({"role": "decode"}, d)]  # noqa: E731
    return {
        q.requests_by_role: by_role(requests, requests),
        q.reporting_pods_by_role: by_role(*reporting),
        q.prompt_tokens_by_role: by_role(requests * 1000, 0.0),
        q.generation_tokens_by_role: by_role(requests, requests * 200),
        q.ttft_buckets: [({"le": "0.25"}, requests * 0.97), ({"le": "0.5"}, requests * 0.99), ({"le": "+Inf"}, requests)],
        q.inter_token_buckets: [({"le": "0.05"}, requests * 199.0), ({"le": "+Inf"}, requests * 200.0)],
        q.energy_by_role: by_role(60 * 700.0, 60 * 1500.0),
        q.sm_clock_by_role: by_role(1700.0, 1400.0),
    }


class CannedSource:
    def __init__(self, answers: dict[str, list[Sample]]) -> None:
        self.answers = answers
        self.down = False

    def vector(self, expr: str, at_s: float) -> list[Sample]:
        if self.down:
            raise MetricsUnavailable("connection refused")
        return list(self.answers.get(expr, []))


class SetPlanner:
    def __init__(self, choice: PlanChoice) -> None:
        self.choice = choice
        self.calls: list[ServiceObservation] = []
        self.fail: str | None = None

    def plan(self, key: tuple[str, str], spec: EnergyAwareLLMServiceSpec, observation: ServiceObservation,
             current: CurrentState, now_s: float) -> PlanChoice:
        self.calls.append(observation)
        if self.fail:
            raise PlanningFailed(self.fail)
        return self.choice


CHOICE = PlanChoice({"prefill": 3, "decode": 2}, {"prefill": 1725, "decode": 1200}, 10.0, 2100.0, "cheaper")


def conditions(patch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in patch.get("conditions", [])}


@pytest.fixture
def parts() -> tuple[CannedSource, SetPlanner, PlanPass]:
    source, planner = CannedSource(healthy_metrics()), SetPlanner(CHOICE)
    return source, planner, PlanPass(source, planner, shipped_catalog())


def test_fresh_data_writes_plan_energy_planned_and_a_plan_changed_event(parts: Any) -> None:
    _, planner, plan_pass = parts
    result = plan_pass.run(body(), NOW)
    plan = result.status_patch["plan"]
    assert (plan["prefillReplicas"], plan["decodeReplicas"]) == (3, 2)
    assert (plan["prefillBaseClockMHz"], plan["decodeBaseClockMHz"]) == (1725, 1200)
    assert plan["computedAt"] == "2026-11-27T12:00:00Z"
    assert plan["predictedPowerWatts"] == 2100.0
    energy = result.status_patch["energy"]
    assert energy["prefill"]["averagePowerWatts"] == 700.0
    assert energy["decode"]["averagePowerWatts"] == 1500.0
    assert energy["joulesPerOutputToken"] == pytest.approx(60 * 2200.0 / (600 * 200), abs=1e-4)
    assert energy["sloAttainment"] == pytest.approx(0.99)
    assert energy["sloAttainmentPercent"] == "99.0"
    assert energy["estimatedSavingPercent"] > 0  # both roles below their max clock
    assert conditions(result.status_patch)["Planned"]["status"] == "True"
    assert result.plan_changed
    assert [e[:2] for e in result.events] == [("Normal", "PlanChanged")]
    # a service without a plan gets the whole plan, not "- -> 3" per field
    assert result.events[0][2].startswith("First plan: prefillReplicas 3, decodeReplicas 2, prefillBaseClockMHz 1725")
    assert "- ->" not in result.events[0][2]
    window = planner.calls[0]
    assert window.arrivals == 600
    assert window.mean_prompt_tokens() == 1000
    assert window.mean_output_tokens() == 200


def test_a_target_between_bucket_edges_is_said_once_in_an_event_and_stays_in_the_condition(parts: Any) -> None:
    _, _, plan_pass = parts
    between = body()
    between["spec"]["slo"] = {"ttftMs": 600, "tpotMs": 20}
    first = plan_pass.run(between, NOW)
    notes = [e for e in first.events if e[1] == "SloTargetBetweenBuckets"]
    assert len(notes) == 1
    assert notes[0][0] == "Normal"
    assert "TTFT target 600 ms lies between vllm's 500 and 750 ms buckets: attainment interpolated" in notes[0][2]
    assert "TPOT target 20 ms lies between vllm's 10 and 25 ms buckets: attainment interpolated" in notes[0][2]
    assert notes[0][2] in conditions(first.status_patch)["Planned"]["message"]
    # the TPOT share at 20 ms: 199/200 at 50 ms and none under 0 ms, interpolated inside (0, 50]
    assert first.status_patch["energy"]["sloAttainment"] == pytest.approx(199 / 200 * 20 / 50, abs=1e-4)
    between["status"] = {**between["status"], **first.status_patch}
    again = plan_pass.run(between, NOW + timedelta(seconds=INTERVAL))
    assert [e for e in again.events if e[1] == "SloTargetBetweenBuckets"] == []


def test_a_role_younger_than_the_window_reports_its_power_over_the_time_it_ran() -> None:
    """Energy counters that began 15 s before the end of a 60 s window hold 15 s of energy: the
    power is that energy over 15 s, not over the whole window."""
    metrics = healthy_metrics()
    q = service_queries("vllm", "ns", "llama", INTERVAL)
    assert q is not None
    metrics[q.energy_by_role] = [({"role": "prefill"}, 15 * 700.0), ({"role": "decode"}, 60 * 1500.0)]
    metrics[q.energy_span_by_role] = [({"role": "prefill"}, 15.0), ({"role": "decode"}, 75.0)]
    result = PlanPass(CannedSource(metrics), SetPlanner(CHOICE), shipped_catalog()).run(body(), NOW)
    energy = result.status_patch["energy"]
    assert energy["prefill"]["averagePowerWatts"] == 700.0
    assert energy["decode"]["averagePowerWatts"] == 1500.0  # a span past the window counts as the window
    assert energy["averagePowerWatts"] == 2200.0


def test_the_same_plan_again_keeps_computed_at_and_posts_no_event(parts: Any) -> None:
    _, _, plan_pass = parts
    first = plan_pass.run(body(), NOW)
    status = {**body()["status"], **first.status_patch}
    again = plan_pass.run(body(status), NOW + timedelta(seconds=INTERVAL))
    assert "plan" not in again.status_patch
    assert not again.plan_changed
    assert again.events == []


def test_prometheus_down_keeps_the_plan_says_why_once_and_recovers(parts: Any) -> None:
    source, planner, plan_pass = parts
    planned = {**body()["status"], **plan_pass.run(body(), NOW).status_patch}
    source.down = True
    down = plan_pass.run(body(planned), NOW + timedelta(seconds=60))
    assert set(down.status_patch) == {"conditions"}  # no plan, no energy: no replica can change
    planned_condition = conditions(down.status_patch)["Planned"]
    assert (planned_condition["status"], planned_condition["reason"]) == ("False", "PrometheusUnavailable")
    assert [e[:2] for e in down.events] == [("Warning", "PrometheusUnavailable")]
    still_down = plan_pass.run(body({**planned, **down.status_patch}), NOW + timedelta(seconds=120))
    assert still_down.status_patch == {}
    assert still_down.events == []
    source.down = False
    back = plan_pass.run(body({**planned, **down.status_patch}), NOW + timedelta(seconds=180))
    assert conditions(back.status_patch)["Planned"]["status"] == "True"
    assert len(planner.calls) == 2  # the planner never ran on missing data


def test_no_series_of_the_service_counts_as_prometheus_unavailable(parts: Any) -> None:
    source, planner, plan_pass = parts
    source.answers = {}
    result = plan_pass.run(body(), NOW)
    assert conditions(result.status_patch)["Planned"]["reason"] == "PrometheusUnavailable"
    assert "no engine series" in conditions(result.status_patch)["Planned"]["message"]
    assert planner.calls == []


def test_a_partial_scrape_never_scales_down(parts: Any) -> None:
    source, planner, plan_pass = parts
    source.answers = healthy_metrics(reporting=(2, 1))  # 3 decode engines ready, 1 reporting
    planner.choice = replace(CHOICE, replicas={"prefill": 4, "decode": 1})
    plan = plan_pass.run(body(), NOW).status_patch["plan"]
    assert plan["decodeReplicas"] == 3
    assert plan["prefillReplicas"] == 4
    assert "no scale-down" in plan["reason"]


def test_replicas_are_clamped_to_the_autoscaling_bounds(parts: Any) -> None:
    _, planner, plan_pass = parts
    planner.choice = replace(CHOICE, replicas={"prefill": 0, "decode": 40})
    plan = plan_pass.run(body(), NOW).status_patch["plan"]
    assert (plan["prefillReplicas"], plan["decodeReplicas"]) == (1, 6)


def test_a_planner_failure_keeps_the_last_plan(parts: Any) -> None:
    _, planner, plan_pass = parts
    planner.fail = "infeasible (gpu-budget): no placement"
    result = plan_pass.run(body(), NOW)
    assert set(result.status_patch) == {"conditions"}
    assert conditions(result.status_patch)["Planned"]["reason"] == "PlanFailed"


def test_status_for_after_a_conflict_recomputes_against_the_new_body_without_planning_again(parts: Any) -> None:
    _, planner, plan_pass = parts
    planning = plan_pass.decide(body(), NOW)
    newer = body({**body()["status"], "conditions": [{"type": "Ready", "status": "True", "reason": "AllReplicasReady",
                                                      "message": "", "lastTransitionTime": "2026-11-27T11:00:00Z"}]})
    result = plan_pass.status_for(planning, newer, NOW)
    # Only the planner's condition is sent: the reconciler's Ready is never carried (so never rolled back).
    assert set(conditions(result.status_apply)) == {"Planned"}
    assert result.status_apply["plan"]["decodeReplicas"] == 2
    assert len(planner.calls) == 1
