"""Session fixtures shared by every test tier: a real kube-apiserver and a whole local cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from e2e.harness.controlplane import ControlPlane

# CI explores the same examples every run (a failure there is reproducible, never a coin toss);
# local runs stay random to keep finding new counterexamples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Soak tests go last: they wait until the shared cluster is old enough, so after the
    other tests they only wait for what is left of that time."""
    items.sort(key=lambda item: item.get_closest_marker("soak") is not None)


@pytest.fixture(scope="session")
def apiserver() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver on loopback, torn down at the end of the session even on failure."""
    plane = ControlPlane(with_cluster=False)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def cluster() -> Iterator[ControlPlane]:
    """A whole local cluster with kwok GPU nodes (see e2e/harness/gpu-nodes.yaml)."""
    plane = ControlPlane(with_cluster=True)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
