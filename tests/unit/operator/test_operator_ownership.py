"""The operator never adopts or rewrites an object it did not create."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from joulescale_operator import reasons
from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.ownership import is_controlled_by
from joulescale_operator.reconcile import Reconciler
from joulescale_operator.render import ChildRef
from tests.unit.operator.conftest import PROFILED_ROLES

IDENTITY = ServiceIdentity("ns", "llama", "uid-1", 1)


def ready(patch: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in patch["conditions"] if c["type"] == "Ready")


def foreign(kind: str, api_version: str, name: str, owner_references: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "labels": {"app.kubernetes.io/managed-by": "joulescale-operator"},
    }
    if owner_references is not None:
        meta["ownerReferences"] = owner_references
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": {"admin": True}}


def our_reference(uid: str = "uid-1", controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "joulescale.io/v1alpha1",
        "kind": "EnergyAwareLLMService",
        "name": "llama",
        "uid": uid,
        "controller": controller,
    }


@pytest.mark.parametrize(
    ("references", "controlled"),
    [
        (None, False),
        ([], False),
        ("x", False),
        ([5], False),
        ([our_reference(uid="uid-of-an-older-llama")], False),
        ([our_reference(controller=False)], False),
        ([{**our_reference(), "kind": "Deployment"}], False),
        ([our_reference()], True),
    ],
)
def test_only_the_controller_reference_to_this_very_service_counts(references: Any, controlled: bool) -> None:
    assert is_controlled_by(foreign("Deployment", "apps/v1", "x", references), IDENTITY) is controlled


@pytest.mark.parametrize("references", [None, [our_reference(uid="someone-else")]])
def test_an_existing_object_of_a_childs_name_is_left_alone_and_named(
    references: Any, memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    """The managed-by label proves nothing (anyone may set it): the object is not ours."""
    theirs = foreign("Service", "v1", "llama-decode", references)
    ref = ChildRef.of(theirs)
    memory_cluster.objects[ref] = copy.deepcopy(theirs)
    patch = Reconciler(memory_cluster, events, clock).reconcile(body_factory())
    assert (ready(patch)["status"], ready(patch)["reason"]) == ("False", reasons.NOT_OWNED)
    assert "Service ns/llama-decode" in ready(patch)["message"]
    assert memory_cluster.writes == [], "no child is applied while one name is taken"
    assert memory_cluster.objects[ref] == theirs
    ((reason, message),) = events.warnings
    assert reason == reasons.NOT_OWNED
    assert "Service ns/llama-decode" in message


def test_our_own_children_are_reconciled_as_before(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    reconciler = Reconciler(memory_cluster, events, clock)
    reconciler.reconcile(body_factory(**PROFILED_ROLES))
    patch = reconciler.reconcile(body_factory(generation=2, **PROFILED_ROLES))
    assert ready(patch)["reason"] == reasons.ROLES_NOT_READY
    assert events.warnings == []


def test_a_disabled_router_deletes_only_what_is_ours(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory(
        engine={"name": "sglang", "image": "lmsysorg/sglang:v0.5.3"}, router={"enabled": False}
    )
    body["status"] = {"router": {"replicas": 1}}
    theirs = foreign("Role", "rbac.authorization.k8s.io/v1", "llama-router")
    memory_cluster.objects[ChildRef.of(theirs)] = theirs
    Reconciler(memory_cluster, events, clock).reconcile(body)
    assert ChildRef.of(theirs) not in memory_cluster.deletes
    assert ChildRef.of(theirs) in memory_cluster.objects
