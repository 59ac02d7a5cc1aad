"""Each sample under manifests/samples runs as is on the local cluster: its pods land on nodes of
the GPU products it names, the router schedules on a cluster of GPU nodes only, and the service
turns Ready. All samples are applied at once (they fit the local nodes together), so the test
stays short of the point where the kwok nodes would need renewed leases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from e2e.harness.nodes import load_nodes
from joulescale_operator.testing import OperatorProcess, condition, get, pods_of

pytestmark = pytest.mark.e2e

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "manifests" / "samples").glob("*.yaml"))
TOKEN_SECRET = "hf-token"


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])
    )


def _apply_sample(cluster: ControlPlane, path: Path) -> tuple[str, dict[str, Any]]:
    sample = yaml.safe_load(path.read_text())
    namespace = cluster.create_namespace("sample")
    secret = ("create", "secret", "generic", TOKEN_SECRET, "-n", namespace, "--from-literal=HF_TOKEN=hf_fake")
    cluster.kubectl(*secret)
    cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    return namespace, sample


def test_every_sample_is_placed_on_its_gpu_products_and_gets_ready(
    cluster: ControlPlane, cluster_operator: OperatorProcess
) -> None:
    products = {node.name: node.product for node in load_nodes()}
    applied = [_apply_sample(cluster, path) for path in SAMPLES]
    try:
        for namespace, sample in applied:
            name = sample["metadata"]["name"]

            def ready(namespace: str = namespace, name: str = name) -> dict[str, Any] | None:
                service = get(cluster, "eals", name, namespace)
                found = condition(service, "Ready")
                return service if found and found["status"] == "True" else None

            try:
                cluster.wait_for(ready, timeout_s=60)
            except TimeoutError:
                described = cluster.kubectl("describe", "eals", name, "-n", namespace, check=False).stdout
                pytest.fail(f"{name} not Ready:\n{described}\n{cluster_operator.log_tail()}")
            pods = pods_of(cluster, namespace, name)
            roles = {pod["metadata"]["labels"]["joulescale.io/role"] for pod in pods}
            expected_roles = {"prefill", "decode"} | (
                {"router"} if sample["spec"].get("router", {}).get("enabled") else set()
            )
            assert roles == expected_roles, (name, roles)
            for pod in pods:
                role = pod["metadata"]["labels"]["joulescale.io/role"]
                assert _ready(pod), (name, pod["metadata"]["name"])
                if role == "router":
                    continue
                node = pod["spec"]["nodeName"]
                assert products[node] in sample["spec"][role]["gpu"]["products"], (name, role, node)
                engine = next(c for c in pod["spec"]["containers"] if c["name"] == "engine")
                assert [m["mountPath"] for m in engine["volumeMounts"]].count("/dev/shm") == 1
    finally:
        for namespace, sample in applied:
            cluster.kubectl(
                "delete", "eals", sample["metadata"]["name"], "-n", namespace, "--wait=true", check=False
            )
