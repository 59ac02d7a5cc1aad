"""The chart's ``profiles:`` value: a ConfigMap the agents and the operator mount read-only and
read with ``--profiles-dir``, whose files the strict loader takes back unchanged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from joulescale.profiles import load_profile, load_profile_dir
from tests.integration.operator.test_chart_privileges import (
    CHART,
    RELEASE_NAMESPACE,
    REPO,
    component,
    of_kind,
    render,
)

pytestmark = pytest.mark.integration

PROFILES_DIR = "/etc/joulescale/profiles"


def _profile(name: str, **changes: object) -> dict[str, Any]:
    document = load_profile("h100-sxm-llama-70b-tp4").model_dump(mode="json", exclude_none=True)
    document.update(name=name, **changes)
    return document


def _render_with(plane: ControlPlane, values: dict[str, Any], tmp_path: Path, check: bool = True) -> Any:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return plane.helm("template", "js", str(CHART), "-n", RELEASE_NAMESPACE, "-f", str(path), check=check)


def _mounts_profiles(pod: dict[str, Any], container: dict[str, Any], configmap: str) -> None:
    assert f"--profiles-dir={PROFILES_DIR}" in container["args"]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == PROFILES_DIR]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == configmap


def test_profiles_become_a_configmap_mounted_into_the_agent_and_the_operator(
    crd_plane: ControlPlane, tmp_path: Path
) -> None:
    qwen = _profile("h100-qwen-32b-tp2", model="Qwen/Qwen2.5-32B-Instruct", tensor_parallel_size=2)
    measured = _profile("measured-70b-tp4", idle_power_watts=61.5)
    values = {"profiles": {"qwen.yaml": qwen, "measured.yml": yaml.safe_dump(measured, sort_keys=False)}}
    documents = [d for d in yaml.safe_load_all(_render_with(crd_plane, values, tmp_path).stdout) if d]

    [configmap] = of_kind(documents, "ConfigMap")
    assert sorted(configmap["data"]) == ["measured.yml", "qwen.yaml"]
    folder = tmp_path / "mounted"
    folder.mkdir()
    for file, text in configmap["data"].items():
        (folder / file).write_text(text, encoding="utf-8")
    loaded, problems = load_profile_dir(folder)
    assert problems == []
    by_name = {p.name: p.model_dump(mode="json", exclude_none=True) for p in loaded}
    assert by_name == {"h100-qwen-32b-tp2": qwen, "measured-70b-tp4": measured}  # numbers survive Helm

    agent = component(documents, "DaemonSet", "agent")["spec"]["template"]
    _mounts_profiles(agent["spec"], agent["spec"]["containers"][0], configmap["metadata"]["name"])
    assert agent["metadata"]["annotations"]["checksum/profiles"]
    operator = component(documents, "Deployment", "operator")["spec"]["template"]
    _mounts_profiles(operator["spec"], operator["spec"]["containers"][0], configmap["metadata"]["name"])

    # The apiserver takes the rendered ConfigMap as it is.
    crd_plane.kubectl("create", "namespace", "chart-profiles")
    configmap["metadata"]["namespace"] = "chart-profiles"
    crd_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(configmap))


def test_without_profiles_nothing_is_mounted(crd_plane: ControlPlane) -> None:
    documents = render(crd_plane)
    assert of_kind(documents, "ConfigMap") == []
    agent = component(documents, "DaemonSet", "agent")["spec"]["template"]["spec"]
    assert not any(arg.startswith("--profiles-dir") for arg in agent["containers"][0]["args"])


@pytest.mark.parametrize("file", ["../escape.yaml", "profile.json", ".hidden.yaml", "a b.yaml"])
def test_a_bad_file_name_fails_the_render_naming_it(crd_plane: ControlPlane, tmp_path: Path, file: str) -> None:
    result = _render_with(crd_plane, {"profiles": {file: _profile("x")}}, tmp_path, check=False)
    assert result.returncode != 0
    # The values schema refuses it first, naming the file; the template's own check stays behind it.
    assert repr(file) in result.stderr or f"'{file}'" in result.stderr, result.stderr


def test_the_kustomize_component_mounts_profiles_as_the_chart_does(crd_plane: ControlPlane, tmp_path: Path) -> None:
    mine = _profile("h100-qwen-32b-tp2", model="Qwen/Qwen2.5-32B-Instruct", tensor_parallel_size=2)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "qwen.yaml").write_text(yaml.safe_dump(mine), encoding="utf-8")
    manifests = os.path.relpath(REPO / "manifests", overlay)  # kustomize takes no absolute roots
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"{manifests}/base"],
        "components": [f"{manifests}/components/profiles"],
        "configMapGenerator": [{"name": "joulescale-profiles", "namespace": RELEASE_NAMESPACE,
                                "files": ["qwen.yaml"]}],
    }), encoding="utf-8")
    base = [d for d in yaml.safe_load_all(crd_plane.kubectl("kustomize", str(overlay)).stdout) if d]
    chart = [d for d in yaml.safe_load_all(_render_with(crd_plane, {"profiles": {"qwen.yaml": mine}}, tmp_path).stdout)
             if d]
    [configmap] = [d for d in of_kind(base, "ConfigMap") if d["metadata"]["name"].startswith("joulescale-profiles")]
    assert yaml.safe_load(configmap["data"]["qwen.yaml"]) == mine
    for kind, name in (("DaemonSet", "agent"), ("Deployment", "operator")):
        pods = {"kustomize": component(base, kind, name), "chart": component(chart, kind, name)}
        views = {}
        for source, workload in pods.items():
            spec = workload["spec"]["template"]["spec"]
            _mounts_profiles(spec, spec["containers"][0], configmap["metadata"]["name"] if source == "kustomize"
                             else "js-profiles")
            views[source] = [a for a in spec["containers"][0]["args"] if a.startswith("--profiles-dir")]
        assert views["kustomize"] == views["chart"], name
