"""One reconcile, end to end over an in-memory cluster: writes only what changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from joulescale_operator.kube import ClusterUnavailable
from joulescale_operator.reconcile import Reconciler


def run(reconciler: Reconciler, body: dict[str, Any]) -> dict[str, Any]:
    """Reconcile and fold the status patch into the body, as the apiserver would."""
    patch = reconciler.reconcile(body)
    status = {**body.get("status", {}), **patch}
    body["status"] = {key: value for key, value in status.items() if value is not None}
    return patch


@pytest.fixture
def reconciler(memory_cluster: Any, events: Any, clock: Any) -> Reconciler:
    return Reconciler(memory_cluster, events, clock)


def test_first_reconcile_creates_every_child_and_reports_not_ready(
    reconciler: Reconciler, memory_cluster: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory()
    patch = run(reconciler, body)
    assert sorted(ref.name for ref in memory_cluster.writes) == [
        "llama-decode",
        "llama-decode",
        "llama-prefill",
        "llama-prefill",
    ]
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RolesNotReady")
    assert patch["observedGeneration"] == 1


def test_a_second_reconcile_of_an_unchanged_service_writes_nothing(
    reconciler: Reconciler, memory_cluster: Any, body_factory: Callable[..., Any], clock: Any
) -> None:
    body = body_factory()
    run(reconciler, body)
    writes = len(memory_cluster.writes)
    assert run(reconciler, body) == {}
    assert len(memory_cluster.writes) == writes


def test_ready_deployments_make_the_service_ready(
    reconciler: Reconciler, memory_cluster: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory()
    body["spec"]["decode"]["replicas"] = 1
    run(reconciler, body)
    memory_cluster.deployment_status = {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1}
    patch = run(reconciler, body)
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert body["status"]["prefill"]["readyOfDesired"] == "1/1"


def test_an_update_rewrites_only_the_changed_child(
    reconciler: Reconciler, memory_cluster: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory()
    run(reconciler, body)
    memory_cluster.writes.clear()
    body["spec"]["decode"]["replicas"] = 3
    body["metadata"]["generation"] = 2
    run(reconciler, body)
    assert [(ref.kind, ref.name) for ref in memory_cluster.writes] == [("Deployment", "llama-decode")]
    assert body["status"]["observedGeneration"] == 2


def test_an_invalid_spec_touches_no_child_and_warns_once(
    reconciler: Reconciler, memory_cluster: Any, events: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory(engine={"image": "vllm/vllm-openai", "args": ["--port", "1"]})
    patch = run(reconciler, body)
    assert memory_cluster.writes == []
    assert memory_cluster.dry_runs == []
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.engine.args" in ready["message"]
    assert run(reconciler, body) == {}
    assert [reason for reason, _ in events.warnings] == ["InvalidSpec"]


def test_an_override_the_apiserver_refuses_is_invalid_before_any_write(
    reconciler: Reconciler, memory_cluster: Any, events: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory()
    body["spec"]["decode"]["podTemplate"] = {"spec": {"priorityClassName": "Bad_Name"}}

    def refuse_decode(manifest: dict[str, Any]) -> str | None:
        refused = manifest["metadata"]["name"] == "llama-decode" and manifest["kind"] == "Deployment"
        return "spec.template.spec.priorityClassName: Invalid value" if refused else None

    memory_cluster.reject = refuse_decode
    patch = run(reconciler, body)
    assert memory_cluster.writes == []
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "priorityClassName" in ready["message"]
    assert events.warnings[0][0] == "InvalidSpec"


def test_an_outage_propagates_for_a_retry(
    reconciler: Reconciler, memory_cluster: Any, body_factory: Callable[..., Any]
) -> None:
    memory_cluster.unavailable = True
    with pytest.raises(ClusterUnavailable):
        reconciler.reconcile(body_factory())


def test_disabling_the_router_deletes_its_children(
    reconciler: Reconciler, memory_cluster: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory(router={"enabled": True, "image": "proxy:1"})
    run(reconciler, body)
    assert "router" in body["status"]
    body["spec"]["router"] = {"enabled": False}
    run(reconciler, body)
    assert {(ref.kind, ref.name) for ref in memory_cluster.deletes} >= {
        ("Deployment", "llama-router"),
        ("Service", "llama-router"),
    }
    assert "router" not in body["status"]
    assert run(reconciler, body) == {}
