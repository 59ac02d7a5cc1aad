"""`make cluster-up` / `make cluster-down` semantics: a background cluster that goes away whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.harness import provision
from e2e.harness.processes import pid_alive

pytestmark = pytest.mark.e2e


def cluster_cli(action: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e2e.harness.cluster", action, "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def test_cluster_up_serves_gpu_nodes_and_cluster_down_leaves_no_process(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    kubectl = provision.ensure_binaries(["kubectl"])["kubectl"]
    try:
        up = cluster_cli("up", directory)
        components = json.loads((directory / "components.json").read_text())
        nodes = subprocess.run(
            [
                str(kubectl),
                f"--kubeconfig={directory / 'kubeconfig'}",
                "get",
                "nodes",
                "-L",
                "nvidia.com/gpu.product",
                "--no-headers",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    finally:
        down = cluster_cli("down", directory)

    assert "cluster up in" in up.stdout
    assert set(components) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
    assert nodes.count("NVIDIA-H100-80GB-HBM3") == 2
    assert "cluster down" in down.stdout
    assert not [name for name, pid in components.items() if pid_alive(pid)]
    assert not (directory / "kubeconfig").exists()
    assert not (directory / "state").exists()
