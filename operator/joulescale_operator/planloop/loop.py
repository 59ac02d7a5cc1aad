"""One planning pass of one service (pure: the metrics source, the planner and the clock are
injected): observe -> plan -> the status to write, and the events to post.

Faults keep the last plan: when Prometheus cannot answer or holds no data of the service, the
pass writes only ``Planned=False PrometheusUnavailable`` (once: a condition that did not change
is no write), so no replica count changes; the next pass recovers by itself. When some ready
engines are missing from the metrics (a partial scrape), the counts can only grow: a shrink
needs every engine's data. A pass writes only the planner's part of the status
(status_owners.py); the shell (daemon.py) writes it and applies the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import pydantic

from joulescale.api import EnergyAwareLLMServiceSpec, PlanStatus
from joulescale.profiles import ProfileCatalog
from joulescale_operator import reasons
from joulescale_operator.conditions import ConditionStatus, condition, find, rfc3339, set_condition
from joulescale_operator.planloop.energy import energy_status
from joulescale_operator.planloop.observation import ROLES, NoData, ServiceObservation, observe
from joulescale_operator.planloop.promql import service_queries
from joulescale_operator.planloop.slo_buckets import between_buckets_note
from joulescale_operator.planloop.source import MetricsSource, MetricsUnavailable
from joulescale_operator.status_owners import owned_changes, planner_status

Outcome = Literal["planned", "unavailable", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class CurrentState:
    """What runs now, from the service's status (the Deployments' counts) and its last plan."""

    replicas: dict[str, int]
    ready: dict[str, int]
    plan: PlanStatus | None


@dataclass(frozen=True, slots=True)
class PlanChoice:
    """The planner's answer for one service, before the bounds of the spec."""

    replicas: dict[str, int]
    base_clock_mhz: dict[str, int | None]
    forecast_rps: float
    predicted_power_watts: float | None
    reason: str


class ServicePlanner(Protocol):
    """The core planner behind a seam (planner.py adapts joulescale.planning.Planner)."""

    def plan(
        self, key: tuple[str, str], spec: EnergyAwareLLMServiceSpec, observation: ServiceObservation,
        current: CurrentState, now_s: float,
    ) -> PlanChoice: ...


class PlanningFailed(Exception):
    """The planner found no placement; the message says which constraint binds."""


@dataclass(slots=True)
class PassResult:
    outcome: Outcome
    status_patch: dict[str, Any] = field(default_factory=dict)
    """The changes of the planner's part of the status (status_owners.py); empty: no write."""
    status_apply: dict[str, Any] = field(default_factory=dict)
    """The planner's whole part of the status with those changes: what the shell applies."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type Normal|Warning, reason, message)."""
    plan_changed: bool = False


@dataclass(frozen=True, slots=True)
class Planning:
    """What one pass found: a plan from fresh data, or why there is none (the fault's reason)."""

    spec: EnergyAwareLLMServiceSpec | None
    choice: PlanChoice | None = None
    observation: ServiceObservation | None = None
    current: CurrentState | None = None
    outcome: Outcome = "planned"
    reason: str = reasons.PLANNED
    message: str = ""


class PlanPass:
    """Plans one service from its body (the object as stored) at ``now``: ``decide`` asks
    Prometheus and the planner once (the planner keeps state), ``status_for`` turns that into
    the status patch against a body, again after a conflict, without planning twice."""

    def __init__(self, source: MetricsSource, planner: ServicePlanner, profiles: ProfileCatalog) -> None:
        self._source = source
        self._planner = planner
        self._profiles = profiles

    def run(self, body: dict[str, Any], now: datetime) -> PassResult:
        return self.status_for(self.decide(body, now), body, now)

    def decide(self, body: dict[str, Any], now: datetime) -> Planning:
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        try:
            spec = EnergyAwareLLMServiceSpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError:
            return Planning(None, outcome="skipped")  # the reconciler reports an invalid spec
        interval = spec.energy.planner.interval_seconds
        queries = service_queries(spec.engine.name, key[0], key[1], interval)
        if queries is None:
            message = f"The planner knows no metric names of engine {spec.engine.name}."
            return Planning(spec, outcome="failed", reason=reasons.NO_ENGINE_METRICS, message=message)
        end_s = now.timestamp()
        try:
            observation = observe(self._source, queries, end_s, interval)
        except (MetricsUnavailable, NoData) as error:
            message = f"{error}; the last plan stays and no replica count changes."
            return Planning(spec, outcome="unavailable", reason=reasons.PROMETHEUS_UNAVAILABLE, message=message)
        current = current_state(_status(body))
        try:
            choice = self._planner.plan(key, spec, observation, current, end_s)
        except PlanningFailed as error:
            return Planning(spec, outcome="failed", reason=reasons.PLAN_FAILED, message=f"{error}; the last plan stays.")
        return Planning(spec, choice, observation, current)

    def status_for(self, planning: Planning, body: dict[str, Any], now: datetime) -> PassResult:
        status = _status(body)
        generation = int(body.get("metadata", {}).get("generation", 0) or 0)
        if planning.outcome == "skipped":
            return PassResult("skipped")
        if planning.choice is None or planning.observation is None or planning.current is None:
            return _not_planned(status, planning.outcome, planning.reason, planning.message, generation, now)
        assert planning.spec is not None
        plan = planned_status(planning.spec, planning.choice, planning.observation, planning.current, now)
        changed = _plan_content(plan) != _plan_content(status.get("plan") or {})
        if not changed:
            plan["computedAt"] = (status.get("plan") or {}).get("computedAt", plan["computedAt"])
        message = describe_plan(plan)
        note = between_buckets_note(planning.spec)
        if note is not None:
            message = f"{message} {note}"
        conditions = list(status.get("conditions", []))
        before = find(conditions, reasons.PLANNED) or {}
        desired: dict[str, Any] = {
            "plan": plan,
            "energy": energy_status(planning.observation, planning.spec, self._profiles, rfc3339(now)),
            "conditions": set_condition(
                conditions, condition(reasons.PLANNED, "True", reasons.PLANNED, message, generation, now)
            ),
        }
        result = _result("planned", status, desired, plan_changed=changed)
        if changed:
            result.events.append(("Normal", reasons.PLAN_CHANGED, plan_change(status.get("plan") or {}, plan)))
        if note is not None and note not in str(before.get("message", "")):  # once: the condition keeps it
            result.events.append(("Normal", reasons.SLO_TARGET_BETWEEN_BUCKETS, note))
        return result


def _not_planned(
    status: dict[str, Any], outcome: Outcome, reason: str, message: str, generation: int, now: datetime
) -> PassResult:
    conditions = list(status.get("conditions", []))
    before = find(conditions, reasons.PLANNED)
    new_status: ConditionStatus = "False"
    new = condition(reasons.PLANNED, new_status, reason, message, generation, now)
    result = _result(outcome, status, {"conditions": set_condition(conditions, new)})
    if before is None or before.get("reason") != reason:
        result.events.append(("Warning", reason, message))
    return result


def _status(body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("status")
    return raw if isinstance(raw, dict) else {}


def current_state(status: dict[str, Any]) -> CurrentState:
    replicas: dict[str, int] = {r: int((status.get(r) or {}).get("replicas", 0)) for r in ROLES}
    ready: dict[str, int] = {r: int((status.get(r) or {}).get("readyReplicas", 0)) for r in ROLES}
    plan = None
    if status.get("plan"):
        try:
            plan = PlanStatus.model_validate(status["plan"])
        except pydantic.ValidationError:
            plan = None
    return CurrentState(replicas, ready, plan)


def planned_status(
    spec: EnergyAwareLLMServiceSpec, choice: PlanChoice, observation: ServiceObservation,
    current: CurrentState, now: datetime,
) -> dict[str, Any]:
    """status.plan: each role's count within its bounds (the fixed count for a fixed role), never
    below what runs while some ready engine is missing from the metrics."""
    plan: dict[str, Any] = {
        "computedAt": rfc3339(now),
        "forecastRequestsPerSecond": round(choice.forecast_rps, 3),
        "reason": choice.reason,
    }
    for role in ROLES:
        role_spec = spec.prefill if role == "prefill" else spec.decode
        count = choice.replicas[role]
        partial = observation.reporting_pods.get(role, 0) < current.ready[role]
        if partial and count < current.replicas[role]:
            count = current.replicas[role]
            plan["reason"] = f"{choice.reason} ({role}: not every ready engine reported, no scale-down)"
        if role_spec.autoscaling is not None:
            count = max(role_spec.autoscaling.min_replicas, min(role_spec.autoscaling.max_replicas, count))
        elif role_spec.replicas is not None:
            count = role_spec.replicas
        plan[f"{role}Replicas"] = count
        clock = choice.base_clock_mhz.get(role)
        if clock is not None:
            plan[f"{role}BaseClockMHz"] = int(clock)
    if choice.predicted_power_watts is not None:
        plan["predictedPowerWatts"] = round(choice.predicted_power_watts, 1)
    return plan


_CONTENT_KEYS = ("prefillReplicas", "decodeReplicas", "prefillBaseClockMHz", "decodeBaseClockMHz")


def _plan_content(plan: dict[str, Any]) -> tuple[Any, ...]:
    """What a plan changes in the cluster: counts and clocks (a forecast moving alone is no change)."""
    return tuple(plan.get(k) for k in _CONTENT_KEYS)


def describe_plan(plan: dict[str, Any]) -> str:
    parts = []
    for role in ROLES:
        clock = plan.get(f"{role}BaseClockMHz")
        at = f" at {clock} MHz" if clock is not None else ""
        parts.append(f"{role} {plan.get(f'{role}Replicas')}{at}")
    return f"Planned {', '.join(parts)} for {plan.get('forecastRequestsPerSecond')} req/s: {plan.get('reason')}."


def plan_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The event's text: what moved, or the whole plan when the service had none before."""
    if not any(key in before for key in _CONTENT_KEYS):
        values = [f"{key} {after[key]}" for key in _CONTENT_KEYS if after.get(key) is not None]
        return f"First plan: {', '.join(values)} ({after.get('reason')})."[:1000]
    changes = [
        f"{key} {before.get(key, '-')} -> {after.get(key, '-')}"
        for key in _CONTENT_KEYS
        if before.get(key) != after.get(key)
    ]
    return f"New plan: {', '.join(changes)} ({after.get('reason')})."[:1000]


def _result(
    outcome: Outcome, status: dict[str, Any], desired: dict[str, Any], plan_changed: bool = False
) -> PassResult:
    """The pass's write: only the planner's part of the status, compared with what the body holds."""
    before, after = planner_status(status), planner_status({**status, **desired})
    changes = owned_changes(before, after)
    return PassResult(outcome, changes, after if changes else {}, plan_changed=plan_changed)
