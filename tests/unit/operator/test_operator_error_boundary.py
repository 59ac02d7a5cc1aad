"""One service's failure stays with it: Ready=False with a reason, an event, no child touched,
and the resync goes on with every other service."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from joulescale_operator import reasons
from joulescale_operator.locks import ServiceLocks
from joulescale_operator.reconcile import Reconciler
from joulescale_operator.render import render_children
from joulescale_operator.resync import Resync, ResyncDied
from tests.unit.operator.conftest import PROFILED_ROLES

# Pod templates that the CRD of 12572d6 stored (preserve-unknown-fields) and that made its
# reconciler raise. The typed podTemplate now refuses them; an object stored before that CRD
# upgrade still reaches the operator, which must refuse it as an invalid spec.
CRASHING_TEMPLATES: dict[str, Any] = {
    "metadata-not-a-map": {"metadata": 5},
    "labels-not-a-map": {"metadata": {"labels": 5}},
    "labels-a-list": {"metadata": {"labels": ["a"]}},
    "container-name-a-list": {"spec": {"containers": [{"name": ["engine"]}]}},
}


NULL_TEMPLATES: dict[str, Any] = {
    "metadata-null": {"metadata": None},
    "labels-null": {"metadata": {"labels": None}},
}


def ready(patch: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in patch["conditions"] if c["type"] == "Ready")


def raising_renderer(bad: str) -> Callable[..., list[dict[str, Any]]]:
    """The renderer seam: any exception a future bug could raise, for the service named bad."""

    def render(identity: Any, spec: Any, plan: Any) -> list[dict[str, Any]]:
        if identity.name == bad:
            raise RuntimeError("renderer bug")
        return render_children(identity, spec, plan)

    return render


@pytest.mark.parametrize("template", CRASHING_TEMPLATES.values(), ids=list(CRASHING_TEMPLATES))
def test_a_stored_template_that_broke_rendering_fails_the_service_not_the_operator(
    template: Any, memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory()
    body["spec"]["decode"]["podTemplate"] = template
    patch = Reconciler(memory_cluster, events, clock).reconcile(body)
    assert (ready(patch)["status"], ready(patch)["reason"]) == ("False", reasons.INVALID_SPEC)
    assert "podTemplate" in ready(patch)["message"]
    assert memory_cluster.writes == []
    assert memory_cluster.dry_runs == []
    ((reason, message),) = events.warnings
    assert reason == reasons.INVALID_SPEC
    assert "podTemplate" in message


def test_any_exception_of_the_renderer_becomes_a_condition_and_one_event(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    reconciler = Reconciler(memory_cluster, events, clock, raising_renderer("llama"))
    body = body_factory()
    patch = reconciler.reconcile(body)
    assert ready(patch)["reason"] == reasons.RENDER_FAILED
    assert "RuntimeError: renderer bug" in ready(patch)["message"]
    assert memory_cluster.writes == []
    body["status"] = patch
    assert reconciler.reconcile(body) == {}, "an unchanged failure writes no status again"
    assert len(events.warnings) == 1, "and posts no second event"


@pytest.mark.parametrize("conditions", ["x", 5, [5, "a", {"no": "type"}], {"type": "Ready"}])
def test_a_mangled_status_does_not_break_the_reconcile(
    conditions: Any, memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory()
    body["status"] = {"conditions": conditions}
    patch = Reconciler(memory_cluster, events, clock).reconcile(body)
    assert ready(patch)["reason"] == reasons.ROLES_NOT_READY


@pytest.mark.parametrize("first", ["bad", "good"])
def test_the_resync_goes_on_past_a_failing_service(
    first: str, memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    resync = Resync(memory_cluster, lambda body: events, clock, render=raising_renderer("bad"))
    for name in (first, {"bad": "good", "good": "bad"}[first]):
        resync.observe("ADDED", body_factory(name=name))
    resync.resync_once()
    memory_cluster.objects.clear()  # somebody deletes every child
    resync.resync_once()
    assert {ref.name for ref in memory_cluster.objects} == {"good-prefill", "good-decode"}
    patched = {ref.name: patch for ref, patch in memory_cluster.status_applies}
    assert ready(patched["bad"])["reason"] == reasons.RENDER_FAILED


def test_an_unexpected_error_of_one_service_is_kept_to_that_service(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    """Past the renderer too: an error in applying one service's children (here a bug of the
    cluster layer) is logged, and the pass goes on."""
    resync = Resync(memory_cluster, lambda body: events, clock)
    resync.observe("ADDED", body_factory(name="a"))
    resync.observe("ADDED", body_factory(name="b"))
    apply = memory_cluster.apply

    def buggy_apply(manifest: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if manifest["metadata"]["name"].startswith("a-"):
            raise KeyError("bug")
        return apply(manifest, **kwargs)

    memory_cluster.apply = buggy_apply
    assert resync.resync_once() == 1
    assert {ref.name for ref in memory_cluster.objects} == {"b-prefill", "b-decode"}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_loop_survives_a_failing_pass_and_liveness_sees_a_dead_loop(
    memory_cluster: Any, events: Any, clock: Any
) -> None:
    resync = Resync(memory_cluster, lambda body: events, clock)
    passes: list[int] = []

    def failing_pass() -> int:
        passes.append(1)
        if len(passes) == 3:
            raise KeyboardInterrupt  # not an Exception: the thread dies, as any thread could
        raise RuntimeError("a pass failed")

    resync.resync_once = failing_pass  # type: ignore[method-assign]
    stop = threading.Event()
    resync.check_alive()  # not started: nothing to report
    resync.start(0.01, stop)
    deadline = time.monotonic() + 5
    while len(passes) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(passes) == 3, "two failing passes did not stop the loop"
    time.sleep(0.05)
    with pytest.raises(ResyncDied):
        resync.check_alive()


def test_a_loop_stopped_on_purpose_is_not_reported_dead(memory_cluster: Any, events: Any, clock: Any) -> None:
    resync = Resync(memory_cluster, lambda body: events, clock)
    stop = threading.Event()
    resync.start(0.01, stop)
    stop.set()
    time.sleep(0.1)
    resync.check_alive()


def test_one_service_is_never_reconciled_by_two_paths_at_once(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    """The resync pass and a child event (and kopf's handlers, through the same locks) of one
    service run one after the other; another service does not wait."""
    inside: dict[str, int] = {}
    most_inside: dict[str, int] = {}
    guard = threading.Lock()

    def slow_render(identity: Any, spec: Any, plan: Any) -> list[dict[str, Any]]:
        with guard:
            inside[identity.name] = inside.get(identity.name, 0) + 1
            most_inside[identity.name] = max(most_inside.get(identity.name, 0), inside[identity.name])
        time.sleep(0.05)
        with guard:
            inside[identity.name] -= 1
        return render_children(identity, spec, plan)

    locks = ServiceLocks()
    resync = Resync(memory_cluster, lambda body: events, clock, locks=locks, render=slow_render)
    resync.observe("ADDED", body_factory(name="a"))
    resync.observe("ADDED", body_factory(name="b"))

    def handler_path() -> None:
        with locks.hold(("ns", "a")):
            Reconciler(memory_cluster, events, clock, slow_render).reconcile(body_factory(name="a"))

    threads = [threading.Thread(target=resync.resync_once) for _ in range(2)]
    threads += [threading.Thread(target=resync.child_changed, args=(("ns", "a"),)) for _ in range(2)]
    threads += [threading.Thread(target=handler_path) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most_inside == {"a": 1, "b": 1}


def test_locks_of_gone_services_are_not_kept() -> None:
    locks = ServiceLocks()
    with locks.hold(("ns", "a")):
        assert len(locks) == 1
    assert len(locks) == 0


@pytest.mark.parametrize("template", NULL_TEMPLATES.values(), ids=list(NULL_TEMPLATES))
def test_a_null_in_a_stored_template_means_unset_and_renders(
    template: Any, memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    """The two templates of 12572d6's crash list that are only nulls: they read as "not set"."""
    body = body_factory(**copy.deepcopy(PROFILED_ROLES))
    body["spec"]["decode"]["podTemplate"] = template
    patch = Reconciler(memory_cluster, events, clock).reconcile(body)
    assert ready(patch)["reason"] not in (reasons.INVALID_SPEC, reasons.RENDER_FAILED)
    assert memory_cluster.writes, "the service's children are written"
    assert events.warnings == []
