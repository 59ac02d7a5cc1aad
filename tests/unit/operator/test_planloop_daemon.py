"""The planner loop's shell: due services, conflicts retried without planning twice, no write
when nothing changed, events and the operator's metrics."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from joulescale.profiles import shipped_catalog
from joulescale_operator.kube import Conflict
from joulescale_operator.planloop.daemon import PlannerLoop
from joulescale_operator.planloop.loop import PlanPass
from joulescale_operator.planloop.opmetrics import OperatorMetrics
from joulescale_operator.planned_replicas import PlanNotApplied
from joulescale_operator.render import ChildRef
from tests.unit.operator.test_planloop_pass import CHOICE, CannedSource, SetPlanner, body, healthy_metrics

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class StoredService:
    """One service as the apiserver keeps it: resourceVersion bumps on every write, an apply at
    a stale resourceVersion is a Conflict, and `interfere` changes it behind the loop's back once.
    An apply merges what it sends into the status (conditions by type), as server-side apply does
    for the fields a writer sends; the real apiserver's merge is the integration tier's."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.writes: list[dict[str, Any]] = []
        self.interfere: dict[str, Any] | None = None

    def get(self, ref: ChildRef) -> dict[str, Any] | None:
        return copy.deepcopy(self.obj)

    def apply_status(
        self, ref: ChildRef, status: dict[str, Any], *, manager_suffix: str = "", resource_version: str | None = None
    ) -> dict[str, Any]:
        if self.interfere is not None:
            self.obj["status"] = {**self.obj["status"], **self.interfere}
            self._bump()
            self.interfere = None
        if resource_version != self.obj["metadata"]["resourceVersion"]:
            raise Conflict("HTTP 409")
        assert manager_suffix == "-planner"
        stored = self.obj["status"]
        sent = {t["type"]: t for t in status.get("conditions", [])}
        kept = [c for c in stored.get("conditions", []) if c["type"] not in sent]
        for key, value in status.items():
            stored[key] = {**stored.get(key, {}), **value} if key in ("prefill", "decode") else value
        stored["conditions"] = kept + list(sent.values())
        self.writes.append(status)
        self._bump()
        return copy.deepcopy(self.obj)

    def patch_status_json(self, ref: ChildRef, operations: list[dict[str, Any]]) -> None:
        raise AssertionError("nothing of the planner's is left behind here")

    def _bump(self) -> None:
        self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)


class Posted:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def warning(self, reason: str, message: str) -> None:
        self.events.append(("Warning", reason))

    def normal(self, reason: str, message: str) -> None:
        self.events.append(("Normal", reason))


def make_loop(stored: StoredService) -> tuple[PlannerLoop, SetPlanner, CannedSource, list[Any], Posted]:
    source, planner = CannedSource(healthy_metrics()), SetPlanner(CHOICE)
    applied: list[Any] = []
    posted = Posted()
    loop = PlannerLoop(stored, PlanPass(source, planner, shipped_catalog()), lambda: [("ns", "llama")],
                       lambda key, obj: applied.append(obj), lambda b: posted, lambda: NOW, OperatorMetrics())
    return loop, planner, source, applied, posted


def sample(metrics: OperatorMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, {"namespace": "ns", "service": "llama", **labels})
    return value or 0.0


def test_a_conflict_rereads_and_writes_over_the_newer_status_with_one_plan() -> None:
    stored = StoredService(body())
    stored.interfere = {"endpoint": "llama-decode.ns.svc:8000"}
    loop, planner, _, applied, posted = make_loop(stored)
    assert loop.plan_service(("ns", "llama")) == 60.0
    assert len(planner.calls) == 1
    assert len(stored.writes) == 1
    assert stored.obj["status"]["endpoint"] == "llama-decode.ns.svc:8000"  # the other writer's field stays
    assert stored.obj["status"]["plan"]["decodeReplicas"] == 2
    assert [a["status"]["plan"]["decodeReplicas"] for a in applied] == [2]  # applied on the stored body
    assert posted.events == [("Normal", "PlanChanged")]
    assert sample(loop.metrics, "joulescale_operator_plan_changes_total") == 1.0
    assert sample(loop.metrics, "joulescale_operator_plan_duration_seconds_count") == 1.0
    assert sample(loop.metrics, "joulescale_operator_planned_replicas", role="decode") == 2.0
    assert sample(loop.metrics, "joulescale_operator_planned_base_clock_mhz", role="prefill") == 1725.0
    saving = stored.obj["status"]["energy"]["estimatedSavingPercent"]
    assert sample(loop.metrics, "joulescale_operator_estimated_saving_ratio") == saving / 100


def test_services_are_planned_when_due_and_an_outage_writes_once() -> None:
    stored = StoredService(body())
    loop, planner, source, applied, posted = make_loop(stored)
    assert loop.run_due(1000.0) == 1
    assert loop.run_due(1030.0) == 0  # interval 60 s
    source.down = True
    assert loop.run_due(1060.0) == 1
    assert loop.run_due(1120.0) == 1
    assert len(stored.writes) == 2  # the plan, then Planned=False once; the second outage pass wrote nothing
    assert stored.obj["status"]["plan"]["decodeReplicas"] == 2
    assert len(applied) == 1
    assert posted.events == [("Normal", "PlanChanged"), ("Warning", "PrometheusUnavailable")]
    assert sample(loop.metrics, "joulescale_operator_prometheus_errors_total") == 2.0
    assert sample(loop.metrics, "joulescale_operator_plan_passes_total", outcome="unavailable") == 2.0
    assert len(planner.calls) == 1


def test_a_plan_not_applied_is_applied_again_at_the_next_pass_and_then_no_more() -> None:
    stored = StoredService(body())
    source, planner = CannedSource(healthy_metrics()), SetPlanner(CHOICE)
    applied: list[int] = []

    def apply(key: Any, obj: dict[str, Any]) -> None:
        applied.append(obj["status"]["plan"]["decodeReplicas"])
        if len(applied) == 1:
            raise PlanNotApplied("the count is held by another field manager")

    loop = PlannerLoop(stored, PlanPass(source, planner, shipped_catalog()), lambda: [("ns", "llama")],
                       apply, lambda b: Posted(), lambda: NOW, OperatorMetrics())
    loop.plan_service(("ns", "llama"))
    assert len(stored.writes) == 1  # the plan is written even though its apply failed
    loop.plan_service(("ns", "llama"))  # the plan did not change: applied again all the same
    loop.plan_service(("ns", "llama"))
    assert applied == [2, 2]
    assert len(stored.writes) == 1


def test_a_new_loop_applies_the_stored_plan_once_even_when_it_does_not_change() -> None:
    stored = StoredService(body())
    first, _, _, applied, _ = make_loop(stored)
    first.plan_service(("ns", "llama"))
    restarted, _, _, applied_again, _ = make_loop(stored)  # an operator restarted after writing the plan
    restarted.plan_service(("ns", "llama"))
    restarted.plan_service(("ns", "llama"))
    assert len(stored.writes) == 1
    assert (len(applied), len(applied_again)) == (1, 1)
