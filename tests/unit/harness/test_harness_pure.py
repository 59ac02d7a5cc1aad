"""Pure parts of the harness: version pinning, the staging-module list, node descriptions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from e2e.harness import versions
from e2e.harness.nodes import load_nodes
from e2e.harness.provision import kubernetes_staging_modules

ROOT = Path(__file__).resolve().parents[3]

KUBERNETES_GO_MOD_EXCERPT = """
module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
\tgithub.com/spf13/cobra v1.9.1
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-2025
)
"""


def test_staging_version_shares_minor_and_patch_with_kubernetes() -> None:
    assert versions.staging_version("v1.34.4") == "v0.34.4"
    assert versions.staging_version("v1.31.10") == "v0.31.10"


def test_the_cache_key_changes_with_any_pin() -> None:
    assert versions.toolset_key("go1.26.8") != versions.toolset_key("go1.26.9")


def test_prometheus_module_versions_fold_the_major_into_the_minor() -> None:
    assert versions.prometheus_module_version("v3.16.0") == "v0.316.0"
    assert versions.prometheus_module_version("v3.5.1") == "v0.305.1"


def test_bumping_prometheus_leaves_the_cluster_toolset_cached() -> None:
    """The Kubernetes build takes 15-25 min cold: Prometheus' pin must not be part of its key."""
    assert versions.prometheus_key("go1.26.8") != versions.toolset_key("go1.26.8")
    assert "prometheus" not in versions.CLUSTER_BINARIES
    assert set(versions.PROMETHEUS_BINARIES) <= set(versions.ALL_BINARIES)


def test_only_modules_replaced_by_staging_copies_are_pinned() -> None:
    assert kubernetes_staging_modules(KUBERNETES_GO_MOD_EXCERPT) == ["k8s.io/api", "k8s.io/client-go"]


def test_default_nodes_are_two_h100_and_one_a100_with_eight_gpus() -> None:
    nodes = load_nodes()

    assert [n.product for n in nodes].count("NVIDIA-H100-80GB-HBM3") == 2
    assert [n.product for n in nodes].count("NVIDIA-A100-SXM4-80GB") == 1
    manifest = nodes[0].manifest()
    assert manifest["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert manifest["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert manifest["spec"]["taints"][0]["key"] == "nvidia.com/gpu"


def test_a_node_description_without_a_product_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("nodes:\n  - name: a\n    product: X\n    gpus: 8\n  - name: b\n    gpus: 8\n")

    with pytest.raises(ValueError, match=r"nodes\[1\].*product"):
        load_nodes(path)


def _provision(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e2e.harness.provision", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_without_go_and_without_a_cache_provisioning_says_what_to_install(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "JOULESCALE_CACHE_DIR": str(tmp_path / "cache")}

    result = _provision(["kube-apiserver"], env)

    assert result.returncode == 1
    assert "Go toolchain" in result.stderr
    assert "KUBEBUILDER_ASSETS" in result.stderr


def test_kubebuilder_assets_supply_the_envtest_binaries_without_any_build(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("etcd", "kube-apiserver", "kubectl"):
        (assets / name).write_text("#!/bin/sh\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "JOULESCALE_CACHE_DIR": str(tmp_path / "cache"),
        "KUBEBUILDER_ASSETS": str(assets),
    }

    result = _provision(["etcd", "kube-apiserver", "kubectl"], env)

    assert result.returncode == 0, result.stderr
    assert f"kubectl\t{assets / 'kubectl'}" in result.stdout
    assert not (tmp_path / "cache").exists()
