"""Agent discovery against the real kube-apiserver: pods on this node, their service (read-only),
and changes of plan and SLO that reach the agent without a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale_agent.discovery.base import Desired
from joulescale_agent.discovery.kube import KubeDiscovery

pytestmark = pytest.mark.integration

CRD = Path(__file__).resolve().parents[1] / "crds" / "joulescale.io_energyawarellmservices.yaml"
GPU = {"products": ["NVIDIA-H100-80GB-HBM3"]}


def service(namespace: str, tpot_ms: int = 50) -> dict[str, Any]:
    return {
        "apiVersion": "joulescale.io/v1alpha1",
        "kind": "EnergyAwareLLMService",
        "metadata": {"name": "chat", "namespace": namespace},
        "spec": {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
            "engine": {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0"},
            "prefill": {"replicas": 1, "tensorParallelSize": 1, "gpu": GPU},
            "decode": {"replicas": 1, "tensorParallelSize": 1, "gpu": GPU},
            "slo": {"ttftMs": 600, "tpotMs": tpot_ms},
            "energy": {"policy": "joulescale"},
        },
    }


def pod(namespace: str, name: str, node: str, role: str = "decode") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"joulescale.io/role": role, "joulescale.io/service": "chat"},
            "annotations": {"joulescale.io/gpus": f"GPU-{name}"},
        },
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "containers": [{"name": "engine", "image": "engine:sim"}],
        },
    }


def set_running(plane: ControlPlane, namespace: str, name: str) -> None:
    status = {"status": {"phase": "Running", "podIP": "10.1.2.3"}}
    plane.kubectl(
        "-n",
        namespace,
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )


async def next_matching(updates: AsyncIterator[Desired], predicate: Any, timeout_s: float = 20.0) -> Desired:
    async def scan() -> Desired:
        async for desired in updates:
            if predicate(desired):
                return desired
        raise AssertionError("discovery ended")

    return await asyncio.wait_for(scan(), timeout_s)


PERMISSIVE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "energyawarellmservices.joulescale.io"},
    "spec": {
        "group": "joulescale.io",
        "scope": "Namespaced",
        "names": {
            "plural": "energyawarellmservices",
            "singular": "energyawarellmservice",
            "kind": "EnergyAwareLLMService",
            "shortNames": ["eals"],
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def install_crd(plane: ControlPlane) -> None:
    """The generated CRD; if the apiserver rejects it (the operator's CRD is a separate concern
    with tests of its own), a schemaless CRD of the same name, so that discovery is still tested."""
    if plane.kubectl("apply", "--server-side", "-f", str(CRD), check=False).returncode != 0:
        plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(PERMISSIVE_CRD))


async def test_discovery_follows_pods_on_this_node_and_their_service(apiserver: ControlPlane) -> None:
    install_crd(apiserver)
    apiserver.kubectl("wait", "--for=condition=Established", "crd/energyawarellmservices.joulescale.io")
    ns = apiserver.create_namespace("agent-disc")
    # No controller-manager in this tier: create the default service account pods need.
    apiserver.kubectl("-n", ns, "create", "serviceaccount", "default", check=False)
    apiserver.kubectl("apply", "-f", "-", input=json.dumps(service(ns)))
    for name, node in (("dec-0", "gpu-node-a"), ("dec-far", "gpu-node-b")):
        apiserver.kubectl("apply", "-f", "-", input=json.dumps(pod(ns, name, node)))
        set_running(apiserver, ns, name)

    discovery = KubeDiscovery(
        apiserver.api_client(),
        "gpu-node-a",
        choose_profile=lambda model, tp: "h100-sxm-llama-8b-tp1",
        watch_timeout_s=5,
    )
    updates = discovery.updates().__aiter__()
    try:
        key = f"{ns}/dec-0"
        first = await next_matching(updates, lambda d: key in d)
        assert f"{ns}/dec-far" not in first, "a pod of another node must be ignored"
        instance, policy = first[key]
        assert instance.gpus == ("GPU-dec-0",)
        assert instance.metrics_url == "http://10.1.2.3:8000/metrics"
        assert (policy.policy, policy.slo.tpot_ms, policy.base_clock_mhz) == ("joulescale", 50, None)

        plan = {"status": {"plan": {"decodeBaseClockMHz": 1305}}}
        apiserver.kubectl(
            "-n",
            ns,
            "patch",
            "energyawarellmservices",
            "chat",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(plan),
        )
        planned = await next_matching(updates, lambda d: key in d and d[key][1].base_clock_mhz == 1305)
        assert planned[key][0] == instance, "a new plan must not change the instance (no restart)"

        apiserver.kubectl(
            "-n",
            ns,
            "patch",
            "energyawarellmservices",
            "chat",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"slo": {"tpotMs": 80}}}),
        )
        await next_matching(updates, lambda d: key in d and d[key][1].slo.tpot_ms == 80)

        apiserver.kubectl("-n", ns, "delete", "pod", "dec-0", "--wait=false")
        await next_matching(updates, lambda d: key not in d)
    finally:
        await updates.aclose()  # type: ignore[attr-defined]
