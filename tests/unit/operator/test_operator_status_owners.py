"""One owner per status field: what each writer sends of a status, and what counts as a change.
The apiserver's merge of the two writers' applies is tested against the real kube-apiserver
(tests/integration/operator/test_operator_status_owners_apiserver.py)."""

from __future__ import annotations

from typing import Any

from joulescale_operator.status_owners import (
    PLANNER,
    RECONCILER,
    leftover_removals,
    owned_changes,
    planner_status,
    reconciler_status,
    with_changes,
)


def cond(type_: str, status: str = "True") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": "R", "message": "", "lastTransitionTime": "t0"}


FULL: dict[str, Any] = {
    "observedGeneration": 4,
    "endpoint": "llama-decode.ns.svc:8000",
    "prefill": {"replicas": 3, "readyReplicas": 2, "readyOfDesired": "2/3", "baseClockMHz": 1725},
    "decode": {"replicas": 2, "readyReplicas": 2, "readyOfDesired": "2/2", "baseClockMHz": 1600},
    "router": {"replicas": 1, "readyReplicas": 1, "readyOfDesired": "1/1"},
    "plan": {"prefillReplicas": 3, "decodeReplicas": 2, "prefillBaseClockMHz": 1725, "decodeBaseClockMHz": 1200},
    "energy": {"joulesPerOutputToken": 0.2},
    "conditions": [cond("Ready"), cond("Planned"), cond("DVFSActive"), cond("SomeoneElses"), "mangled", {"type": 3}],
}


def test_every_field_has_one_owner_and_foreign_conditions_have_none() -> None:
    mine, theirs = reconciler_status(FULL), planner_status(FULL)
    assert set(mine) == {"observedGeneration", "endpoint", "prefill", "decode", "router", "conditions"}
    assert set(theirs) == {"plan", "energy", "prefill", "decode", "conditions"}
    assert [c["type"] for c in mine["conditions"]] == ["Ready", "DVFSActive"]
    assert [c["type"] for c in theirs["conditions"]] == ["Planned"]
    assert not RECONCILER.conditions & PLANNER.conditions
    assert not set(RECONCILER.fields) & set(PLANNER.fields)
    assert not set(RECONCILER.role_fields) & set(PLANNER.role_fields)
    for role in ("prefill", "decode"):
        assert set(mine[role]) == {"replicas", "readyReplicas", "readyOfDesired"}
        assert set(theirs[role]) == {"baseClockMHz"}


def test_the_planner_sends_the_plans_clocks_not_what_a_role_says() -> None:
    theirs = planner_status(FULL)
    assert (theirs["prefill"], theirs["decode"]) == ({"baseClockMHz": 1725}, {"baseClockMHz": 1200})
    without_clock = {**FULL, "plan": {"prefillReplicas": 3}}
    assert "prefill" not in planner_status(without_clock)  # no clock planned: the planner's clock goes


def test_a_change_of_the_other_writers_part_is_no_change_of_mine() -> None:
    other = {**FULL, "plan": {"prefillReplicas": 9}, "conditions": [cond("Ready"), cond("Planned", "False"),
                                                                     cond("DVFSActive")]}
    assert owned_changes(reconciler_status(FULL), reconciler_status(other)) == {}
    assert set(owned_changes(planner_status(FULL), planner_status(other))) == {"plan", "prefill", "decode",
                                                                                "conditions"}


def test_a_removed_field_is_a_change_to_none_and_is_not_sent() -> None:
    before = reconciler_status(FULL)
    after = reconciler_status({**FULL, "router": None})
    changes = owned_changes(before, after)
    assert changes == {"router": None}
    applied = with_changes(before, changes)
    assert "router" not in applied
    assert applied == after


def test_leftovers_of_an_older_writer_are_removed_behind_a_version_test() -> None:
    stored = {"metadata": {"resourceVersion": "41"}, "status": FULL}
    sent = reconciler_status({**FULL, "router": None, "conditions": [cond("Ready"), cond("DVFSActive")]})
    assert "router" not in sent
    operations = leftover_removals(stored, sent, RECONCILER)
    assert operations == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "41"},
        {"op": "remove", "path": "/status/router"},
    ]
    without_dvfs = {**sent, "conditions": [cond("Ready")]}
    assert leftover_removals(stored, without_dvfs, RECONCILER)[-2:] == [
        {"op": "test", "path": "/status/conditions/2/type", "value": "DVFSActive"},
        {"op": "remove", "path": "/status/conditions/2"},
    ]


def test_a_planner_leftover_clock_goes_alone_and_nothing_left_is_no_write() -> None:
    stored = {"metadata": {"resourceVersion": "7"}, "status": FULL}
    sent = planner_status({**FULL, "plan": {"decodeBaseClockMHz": 1200}})
    assert leftover_removals(stored, sent, PLANNER)[1:] == [{"op": "remove", "path": "/status/prefill/baseClockMHz"}]
    assert leftover_removals(stored, reconciler_status(FULL), RECONCILER) == []
    assert leftover_removals(stored, planner_status(FULL) | {"decode": {"baseClockMHz": 1600}}, PLANNER) == []
