"""The samples pass the operator's own checks and render their children."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.render import render_children
from joulescale_operator.validation import validated_spec

SAMPLES = sorted((Path(__file__).resolve().parents[3] / "manifests" / "samples").glob("*.yaml"))


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_renders_both_roles(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    identity = ServiceIdentity(namespace="ns", name=raw["metadata"]["name"], uid="u", generation=1)
    spec = validated_spec(identity, raw["spec"])
    kinds = [(child["kind"], child["metadata"]["name"]) for child in render_children(identity, spec)]
    assert ("Deployment", f"{identity.name}-prefill") in kinds
    assert ("Deployment", f"{identity.name}-decode") in kinds


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_engine_pods_get_one_operator_sized_dev_shm(path: Path) -> None:
    """/dev/shm comes from the operator, sized for the role's TP, not from a hand-written override."""
    raw = yaml.safe_load(path.read_text())
    identity = ServiceIdentity(namespace="ns", name=raw["metadata"]["name"], uid="u", generation=1)
    spec = validated_spec(identity, raw["spec"])
    for role in ("prefill", "decode"):
        assert "podTemplate" not in raw["spec"][role], (path.name, role)
        (deployment,) = [
            c
            for c in render_children(identity, spec)
            if c["kind"] == "Deployment" and c["metadata"]["name"] == f"{identity.name}-{role}"
        ]
        pod = deployment["spec"]["template"]["spec"]
        (engine,) = [c for c in pod["containers"] if c["name"] == "engine"]
        (shm_mount,) = [m for m in engine["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        (shm,) = [v for v in pod["volumes"] if v["name"] == shm_mount["name"]]
        tp = raw["spec"][role].get("tensorParallelSize", 1)
        assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{spec.engine.shm_gib_per_gpu * tp}Gi"}
