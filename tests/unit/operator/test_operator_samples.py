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
