"""Session fixtures shared by every test tier: a real kube-apiserver and a whole local cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from e2e.harness.controlplane import ControlPlane
from e2e.harness.prometheus import PrometheusServer

# CI explores the same examples every run (a failure there is reproducible, never a coin toss);
# local runs stay random to keep finding new counterexamples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def _run_order(item: pytest.Item) -> int:
    if item.get_closest_marker("quiet") is not None:
        return -1
    if item.get_closest_marker("soak") is not None:
        return 2
    return 0 if item.get_closest_marker("e2e") is not None else 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Timing measurements on loopback first, while the machine is quiet; then e2e tests (the
    shared local cluster); soak tests last; the rest in between (a stable sort keeps their
    order). A soak test waits until the cluster is old enough: started early, the cluster ages
    while the other tiers run, so the soak test only waits for what is left."""
    items.sort(key=_run_order)


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


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus on loopback scraping every second, no targets yet (``set_targets``);
    stopped after the test even on failure."""
    with PrometheusServer(tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@pytest.fixture(autouse=True)
def _cluster_namespaces_cleaned(request: pytest.FixtureRequest) -> Iterator[None]:
    """The local cluster is shared and its GPUs are few: what a test placed in its namespaces
    is deleted after it, so the next test's pods find the GPUs free (the soak test's pods stay
    for it to watch)."""
    if "cluster" not in request.fixturenames or request.node.get_closest_marker("soak") is not None:
        yield
        return
    plane = request.getfixturevalue("cluster")
    if not isinstance(plane, ControlPlane):  # a module's own fixture of that name
        yield
        return
    before = len(plane.created_namespaces)
    yield
    plane.delete_namespaces(plane.created_namespaces[before:])
