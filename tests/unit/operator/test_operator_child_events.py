"""Normal events for real changes of children only: created, scaled, updated; never a no-op."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from joulescale_operator.child_events import change_events, child_change
from joulescale_operator.reconcile import Reconciler


def deployment(replicas: int = 1, image: str = "vllm:1", version: str = "5", **meta: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "llama-decode", "resourceVersion": version, **meta},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": image}]}}},
        "status": {"readyReplicas": 0},
    }


def test_a_new_child_is_created() -> None:
    assert child_change(None, deployment()) == ("Created", "Deployment llama-decode")


def test_a_replica_change_is_a_scale_and_a_template_change_an_update() -> None:
    assert child_change(deployment(1), deployment(3, version="6")) == (
        "Scaled",
        "Deployment llama-decode from 1 to 3 replicas",
    )
    assert child_change(deployment(image="vllm:1"), deployment(image="vllm:2", version="6")) == (
        "Updated",
        "Deployment llama-decode",
    )
    assert child_change(deployment(1, "vllm:1"), deployment(2, "vllm:2", version="6")) == (
        "Updated",
        "Deployment llama-decode (scaled from 1 to 2 replicas)",
    )


def test_changes_make_one_event_per_reason() -> None:
    changes = [("Created", "Deployment a"), ("Scaled", "Deployment b from 1 to 2 replicas"), ("Created", "Service a")]
    assert change_events(changes) == [
        ("Created", "Created Deployment a, Service a."),
        ("Scaled", "Scaled Deployment b from 1 to 2 replicas."),
    ]
    assert change_events([]) == []


def test_a_deployment_changed_only_by_its_controller_is_not_our_change() -> None:
    after = deployment(version="9", annotations={"deployment.kubernetes.io/revision": "2"})
    after["status"] = {"readyReplicas": 1}
    assert child_change(deployment(annotations={"deployment.kubernetes.io/revision": "1"}), after) is None


def test_other_kinds_change_when_their_version_moves() -> None:
    service = {"kind": "Service", "metadata": {"name": "llama-decode", "resourceVersion": "3"}, "spec": {}}
    assert child_change(service, copy.deepcopy(service)) is None
    moved = copy.deepcopy(service)
    moved["metadata"]["resourceVersion"] = "4"
    assert child_change(service, moved) == ("Updated", "Service llama-decode")


def test_the_reconciler_posts_one_event_per_real_change_and_none_for_no_ops(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory()
    Reconciler(memory_cluster, events, clock).reconcile(body)
    assert events.normals == [
        (
            "Created",
            "Created Deployment llama-prefill, Deployment llama-decode, Service llama-prefill, Service llama-decode.",
        )
    ]
    events.normals.clear()
    Reconciler(memory_cluster, events, clock).reconcile(body)
    assert events.normals == []
    body["spec"]["decode"]["replicas"] = 5
    Reconciler(memory_cluster, events, clock).reconcile(body)
    assert events.normals == [("Scaled", "Scaled Deployment llama-decode from 2 to 5 replicas.")]
