"""`joulescale plan --emit-service` writes a service the real kube-apiserver accepts (CRD schema
and CEL rules, server-side dry run), with the planned replicas and TP per role."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from joulescale.cli import main

pytestmark = pytest.mark.integration


def test_the_emitted_service_passes_a_server_side_dry_run(crd_plane: ControlPlane, tmp_path: Path) -> None:
    service_file = tmp_path / "service.yaml"
    out = io.StringIO()
    code = main(["plan", "--profile", "h100-sxm-llama-70b-tp4,h100-sxm-llama-70b-tp8", "--gpus", "16",
                 "--cache-dir", str(tmp_path / "cache"), "--emit-service", str(service_file),
                 "--service-name", "planned"], out=out)
    assert code == 0, out.getvalue()
    namespace = crd_plane.create_namespace("plan")
    applied = crd_plane.kubectl("apply", "-n", namespace, "--dry-run=server", "-o", "yaml", "-f", str(service_file))
    stored = yaml.safe_load(applied.stdout)
    emitted = yaml.safe_load(service_file.read_text())
    for role in ("prefill", "decode"):
        assert stored["spec"][role]["replicas"] == emitted["spec"][role]["replicas"] >= 1
        assert stored["spec"][role]["tensorParallelSize"] == emitted["spec"][role]["tensorParallelSize"]
    assert emitted["metadata"]["annotations"].items() <= stored["metadata"]["annotations"].items()
