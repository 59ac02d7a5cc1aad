"""Builders of service bodies, an in-memory cluster and a fixed clock for the operator's pure parts."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from joulescale_operator.kube import ClusterUnavailable, Conflict, Rejected
from joulescale_operator.render import ChildRef

Body = dict[str, Any]


def make_body(name: str = "llama", generation: int = 1, **spec_changes: Any) -> Body:
    spec: dict[str, Any] = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": {"image": "vllm/vllm-openai:v0.11.0"},
        "prefill": {"replicas": 1, "tensorParallelSize": 2, "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}},
        "decode": {"replicas": 2, "tensorParallelSize": 4, "gpu": {"products": ["NVIDIA-A100-SXM4-80GB"]}},
        "slo": {"ttftMs": 600, "tpotMs": 50},
    }
    spec.update(spec_changes)
    return {
        "apiVersion": "joulescale.io/v1alpha1",
        "kind": "EnergyAwareLLMService",
        "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "generation": generation},
        "spec": spec,
    }


PROFILED_ROLES: dict[str, Any] = {
    "prefill": {"replicas": 1, "tensorParallelSize": 1, "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}},
    "decode": {"replicas": 2, "tensorParallelSize": 1, "gpu": {"products": ["NVIDIA-A100-SXM4-80GB"]}},
}
"""Roles that have a shipped profile for make_body's model: no NoProfile warning (dvfs.py)."""


@pytest.fixture
def body_factory() -> Callable[..., Body]:
    return make_body


class MemoryCluster:
    """Applies like server-side apply would for our purposes: replaces the owned object and
    bumps resourceVersion only when the content changed."""

    def __init__(self) -> None:
        self.objects: dict[ChildRef, dict[str, Any]] = {}
        self.writes: list[ChildRef] = []
        self.dry_runs: list[ChildRef] = []
        self.deletes: list[ChildRef] = []
        self.status_applies: list[tuple[ChildRef, dict[str, Any]]] = []
        """(service, the reconciler's part of its status as applied)."""
        self.reject: Callable[[dict[str, Any]], str | None] = lambda manifest: None
        self.unavailable = False
        self.deployment_status: dict[str, Any] = {}
        self.pods: list[dict[str, Any]] = []
        self.pod_lists: list[tuple[str, dict[str, str]]] = []
        self.refuse_pods = False
        self.replica_owners: dict[ChildRef, set[str]] = {}
        """The field managers that own each Deployment's spec.replicas."""

    def get(self, ref: ChildRef) -> dict[str, Any] | None:
        if self.unavailable:
            raise ClusterUnavailable("apiserver down")
        found = self.objects.get(ref)
        return copy.deepcopy(found) if found is not None else None

    def manager(self, suffix: str = "") -> str:
        return "joulescale-operator" + suffix

    def apply(
        self, manifest: dict[str, Any], *, dry_run: bool = False, manager_suffix: str = "", force: bool = True
    ) -> dict[str, Any]:
        if self.unavailable:
            raise ClusterUnavailable("apiserver down")
        reason = self.reject(manifest)
        if reason is not None:
            raise Rejected(reason)
        ref = ChildRef.of(manifest)
        if dry_run:
            self.dry_runs.append(ref)
            return copy.deepcopy(manifest)
        current = self.objects.get(ref)
        content = copy.deepcopy(manifest)
        precondition = content["metadata"].pop("resourceVersion", None)
        if precondition is not None and (current is None or current["metadata"]["resourceVersion"] != precondition):
            raise Conflict(f"{ref.name}: HTTP 409: the object has been modified")
        if content["kind"] == "Deployment":
            content = self._replicas_owned(ref, current, content, self.manager(manager_suffix), force)
        if current is None or _content(current) != _content(content):
            version = int(current["metadata"]["resourceVersion"]) + 1 if current else 1
            content["metadata"]["resourceVersion"] = str(version)
            content["metadata"]["generation"] = version
            self.objects[ref] = content
            self.writes.append(ref)
        else:
            current["metadata"]["managedFields"] = content["metadata"].get("managedFields", [])
        result = copy.deepcopy(self.objects[ref])
        if result["kind"] == "Deployment":
            result["status"] = copy.deepcopy(self.deployment_status)
        return result

    def _replicas_owned(
        self, ref: ChildRef, current: dict[str, Any] | None, content: dict[str, Any], manager: str, force: bool
    ) -> dict[str, Any]:
        """Server-side apply's rules for one field, spec.replicas: an apply that sends only it
        (the planner's) changes only it; another that leaves it out keeps it while some other
        manager owns it, and drops it to the default of one otherwise; a different value owned
        by another manager is a Conflict unless forced (which takes it over)."""
        owners = self.replica_owners.setdefault(ref, set())
        stored = (current or {}).get("spec", {}).get("replicas")
        if set(content["spec"]) == {"replicas"}:
            assert current is not None, "a replicas-only apply cannot create a Deployment"
            merged = copy.deepcopy(current)
            merged["spec"]["replicas"] = content["spec"]["replicas"]
            content = merged
        count = content["spec"].get("replicas")
        if count is None:
            owners.discard(manager)
            content["spec"]["replicas"] = stored if owners and stored is not None else 1
        else:
            if owners - {manager} and count != stored:
                if not force:
                    raise Conflict(f"{ref.name}: HTTP 409: conflict with {sorted(owners - {manager})}")
                owners.clear()
            owners.add(manager)
        content["metadata"]["managedFields"] = [
            {"manager": owner, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
            for owner in sorted(owners)
        ]
        return content

    def delete(self, ref: ChildRef) -> None:
        self.deletes.append(ref)
        self.objects.pop(ref, None)
        self.replica_owners.pop(ref, None)

    def apply_status(self, ref: ChildRef, status: dict[str, Any]) -> dict[str, Any]:
        if self.unavailable:
            raise ClusterUnavailable("apiserver down")
        self.status_applies.append((ref, copy.deepcopy(status)))
        return {"metadata": {"name": ref.name, "namespace": ref.namespace}, "status": copy.deepcopy(status)}

    def patch_status_json(self, ref: ChildRef, operations: list[dict[str, Any]]) -> None:
        raise AssertionError("the reconciler's applies leave nothing behind here")

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        """The pods set by the test that match like a label selector would."""
        self.pod_lists.append((namespace, selector))
        if self.refuse_pods:
            raise Rejected("pods is forbidden")
        return [
            copy.deepcopy(pod)
            for pod in self.pods
            if pod["metadata"].get("namespace") == namespace
            and all(pod["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(obj)
    stripped["metadata"].pop("resourceVersion", None)
    stripped["metadata"].pop("generation", None)
    stripped["metadata"].pop("managedFields", None)
    return stripped


class RecordedEvents:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, str]] = []
        self.normals: list[tuple[str, str]] = []

    def warning(self, reason: str, message: str) -> None:
        self.warnings.append((reason, message))

    def normal(self, reason: str, message: str) -> None:
        self.normals.append((reason, message))


class SteppingClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def memory_cluster() -> MemoryCluster:
    return MemoryCluster()


@pytest.fixture
def events() -> RecordedEvents:
    return RecordedEvents()


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()
