"""The operator tells the events of its own applies from everybody else's changes."""

from __future__ import annotations

from typing import Any

from joulescale_operator.own_writes import OwnWrites
from joulescale_operator.render import ChildRef


def _service(name: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns"},
            "spec": {"ports": [{"port": port}]}}


def test_only_the_version_the_operator_wrote_is_its_own(memory_cluster: Any) -> None:
    writes = OwnWrites(memory_cluster)
    ref = ChildRef("v1", "Service", "ns", "a")
    applied = writes.apply(_service("a", 80))
    mine = applied["metadata"]["resourceVersion"]
    assert writes.is_own(ref, mine)
    assert not writes.is_own(ref, str(int(mine) + 1))  # a later change by someone else
    assert not writes.is_own(ref, None)
    assert not writes.is_own(ChildRef("v1", "Service", "ns", "b"), mine)
    newer = writes.apply(_service("a", 81))["metadata"]["resourceVersion"]
    assert not writes.is_own(ref, mine)
    assert writes.is_own(ref, newer)


class _FixedVersion:
    """An apiserver answering every apply, dry runs included, with resourceVersion 7."""

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, manager_suffix: str = "", force: bool = True
    ) -> dict[str, Any]:
        return {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "7"}}

    def delete(self, ref: ChildRef) -> None:
        pass

    def apply_status(self, ref: ChildRef, status: dict[str, Any]) -> dict[str, Any]:
        return {}

    def patch_status_json(self, ref: ChildRef, operations: list[dict[str, Any]]) -> None:
        pass


def test_a_dry_run_or_a_deletion_leaves_no_own_version() -> None:
    writes = OwnWrites(_FixedVersion())
    ref = ChildRef("v1", "Service", "ns", "a")
    writes.apply(_service("a", 80), dry_run=True)
    assert not writes.is_own(ref, "7")
    writes.apply(_service("a", 80))
    assert writes.is_own(ref, "7")
    writes.delete(ref)
    assert not writes.is_own(ref, "7")
