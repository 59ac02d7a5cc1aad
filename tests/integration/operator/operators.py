"""The operator subprocess that the module fixtures of this tier run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import OperatorProcess, get


def running_operator(
    plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, resync_interval_s: float
) -> Iterator[OperatorProcess]:
    """An operator subprocess for the length of a fixture, logging into the test's temp dir."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(plane.kubeconfig, log, resync_interval_s=resync_interval_s)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def wait_children(
    plane: ControlPlane, namespace: str, name: str, kinds: tuple[str, ...] = ("deployment", "service")
) -> dict[str, dict[str, Any]]:
    """The service's prefill and decode children of ``kinds``, keyed "kind/name", once all exist."""

    def fetch() -> dict[str, dict[str, Any]] | None:
        found = {
            f"{kind}/{name}-{role}": get(plane, kind, f"{name}-{role}", namespace)
            for kind in kinds
            for role in ("prefill", "decode")
        }
        return found if all(found.values()) else None  # type: ignore[return-value]

    children: dict[str, dict[str, Any]] = plane.wait_for(fetch, timeout_s=30)
    return children
