"""The periodic resync reconciles every service seen on the watch and forgets deleted ones."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from joulescale_operator.resync import Resync


def resync_for(memory_cluster: Any, events: Any, clock: Any) -> Resync:
    return Resync(memory_cluster, lambda body: events, clock)


def test_known_services_follow_the_watch(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    resync = resync_for(memory_cluster, events, clock)
    resync.observe("ADDED", body_factory(name="a"))
    resync.observe("ADDED", body_factory(name="b"))
    resync.observe("DELETED", body_factory(name="a"))
    assert resync.known() == [("ns", "b")]


def test_a_service_being_deleted_is_not_resynced(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    resync = resync_for(memory_cluster, events, clock)
    body = body_factory()
    resync.observe("ADDED", body)
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    resync.observe("MODIFIED", body)
    assert resync.known() == []


def test_resync_recreates_drifted_children_and_patches_the_status(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    resync = resync_for(memory_cluster, events, clock)
    resync.observe("ADDED", body_factory())
    assert resync.resync_once() == 1
    assert len(memory_cluster.objects) == 4
    ((ref, patch),) = memory_cluster.status_applies
    assert (ref.kind, ref.name) == ("EnergyAwareLLMService", "llama")
    assert patch["observedGeneration"] == 1


def test_the_observed_body_is_a_copy(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    resync = resync_for(memory_cluster, events, clock)
    body = body_factory()
    resync.observe("ADDED", body)
    body["spec"]["decode"]["replicas"] = 0
    resync.resync_once()
    decode = next(
        obj
        for ref, obj in memory_cluster.objects.items()
        if ref.name == "llama-decode" and ref.kind == "Deployment"
    )
    assert decode["spec"]["replicas"] == 2


def test_an_outage_is_logged_and_the_loop_goes_on(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    resync = resync_for(memory_cluster, events, clock)
    resync.observe("ADDED", body_factory())
    memory_cluster.unavailable = True
    assert resync.resync_once() == 0
    memory_cluster.unavailable = False
    assert resync.resync_once() == 1


def test_the_loop_stops_when_asked(memory_cluster: Any, events: Any, clock: Any) -> None:
    resync = resync_for(memory_cluster, events, clock)
    stop = threading.Event()
    stop.set()
    resync.run(3600.0, stop)  # returns at once instead of waiting an hour


def test_a_changed_child_reconciles_only_its_own_known_service(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    resync = resync_for(memory_cluster, events, clock)
    resync.observe("ADDED", body_factory(name="a"))
    resync.observe("ADDED", body_factory(name="b"))
    assert not resync.child_changed(("ns", "gone"))
    assert memory_cluster.objects == {}
    assert resync.child_changed(("ns", "b"))
    assert {ref.name for ref in memory_cluster.objects} == {"b-prefill", "b-decode"}
    ((ref, _),) = memory_cluster.status_applies
    assert ref.name == "b"


def test_a_body_with_an_older_spec_does_not_replace_the_newer_one(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    resync = resync_for(memory_cluster, events, clock)
    newer = body_factory(generation=3, prefill={"replicas": 2, "tensorParallelSize": 2,
                                                "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}})
    resync.observe("MODIFIED", newer)
    resync.observe("MODIFIED", body_factory(generation=2))  # the planner's body, overtaken by the watch
    resync.resync_once()
    prefill = next(obj for ref, obj in memory_cluster.objects.items() if ref.name == "llama-prefill")
    assert prefill["spec"]["replicas"] == 2
    recreated = body_factory(generation=1)
    recreated["metadata"]["uid"] = "uid-2"  # deleted and created again, the deletion unseen
    memory_cluster.objects.clear()  # the children went with the deleted one
    resync.observe("ADDED", recreated)
    resync.resync_once()
    prefill = next(obj for ref, obj in memory_cluster.objects.items() if ref.name == "llama-prefill")
    assert prefill["spec"]["replicas"] == 1
