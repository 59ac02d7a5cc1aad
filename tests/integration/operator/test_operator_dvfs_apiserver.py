"""DVFSActive against the real kube-apiserver: an operator with a ``--profiles-dir`` marks a
service whose model has no profile ``DVFSActive=False NoProfile`` and posts a Warning event on it,
while a service that a user profile covers is ``DVFSActive=True``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from joulescale.profiles import load_profile
from joulescale_operator.testing import OperatorProcess, apply, condition, get, service_manifest

pytestmark = pytest.mark.integration

H100 = "NVIDIA-H100-80GB-HBM3"
REACTION_S = 30.0


@pytest.fixture(scope="module")
def profiled_operator(crd_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    folder = tmp_path_factory.mktemp("profiles")
    mine = load_profile("h100-sxm-llama-70b-tp4").model_dump(mode="json", exclude_none=True)
    mine.update(name="h100-qwen-32b-tp2", model="Qwen/Qwen2.5-32B-Instruct", tensor_parallel_size=2)
    (folder / "qwen.yaml").write_text(yaml.safe_dump(mine), encoding="utf-8")
    (folder / "broken.yaml").write_text("name: [", encoding="utf-8")  # logged and skipped
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(crd_plane.kubeconfig, log, resync_interval_s=1.5,
                              extra_args=(f"--profiles-dir={folder}",))
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _dvfs(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    return condition(get(plane, "eals", name, namespace), "DVFSActive")


def _events(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    out = plane.kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                        "-o", "json")
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def test_no_profile_is_a_condition_and_an_event_and_a_user_profile_clears_it(
    crd_plane: ControlPlane, profiled_operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("dvfs")
    role = {"replicas": 1, "tensorParallelSize": 2, "gpu": {"products": [H100]}}
    apply(crd_plane, service_manifest("mistral", namespace, model={"name": "mistralai/Mistral-Small-24B"},
                                      prefill=role, decode=role))
    apply(crd_plane, service_manifest("qwen", namespace, model={"name": "Qwen/Qwen2.5-32B-Instruct"},
                                      prefill=role, decode=role))

    dvfs = crd_plane.wait_for(lambda: _dvfs(crd_plane, namespace, "mistral"), timeout_s=REACTION_S)
    assert (dvfs["status"], dvfs["reason"]) == ("False", "NoProfile")
    assert f"prefill: TP2 on {H100}" in dvfs["message"]
    assert f"decode: TP2 on {H100}" in dvfs["message"]

    def warned() -> list[dict[str, Any]] | None:
        found = [e for e in _events(crd_plane, namespace, "mistral") if e["reason"] == "NoProfile"]
        return found or None

    [event] = crd_plane.wait_for(warned, timeout_s=REACTION_S)
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "EnergyAwareLLMService"
    assert "mistralai/Mistral-Small-24B" in event["message"]

    covered = crd_plane.wait_for(lambda: _dvfs(crd_plane, namespace, "qwen"), timeout_s=REACTION_S)
    assert (covered["status"], covered["reason"]) == ("True", "ProfilesFound")
    assert not [e for e in _events(crd_plane, namespace, "qwen") if e["reason"] == "NoProfile"]
    assert "broken.yaml" in Path(profiled_operator.log_path).read_text(errors="replace")
