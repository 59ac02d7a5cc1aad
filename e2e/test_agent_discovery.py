"""Agent discovery against the real kube-apiserver: pods on this node, their service (read-only),
and changes of plan and SLO that reach the agent without a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.agent_tenants import create, engine_pod, owner_chain, service, set_running
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import Kubelet, pod_resources
from joulescale_agent.discovery.base import Desired
from joulescale_agent.discovery.kube import KubeDiscovery
from joulescale_agent.discovery.podresources import PodResourcesSource
from joulescale_agent.kube_events import KubeEventRecorder

pytestmark = pytest.mark.integration

CRD = Path(__file__).resolve().parents[1] / "crds" / "joulescale.io_energyawarellmservices.yaml"


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


@pytest.fixture
def kubelet() -> Iterator[Kubelet]:
    k = Kubelet()
    yield k
    k.stop()


async def test_discovery_follows_pods_on_this_node_and_their_service(
    apiserver: ControlPlane, kubelet: Kubelet
) -> None:
    install_crd(apiserver)
    apiserver.wait_crd_established("energyawarellmservices.joulescale.io")
    ns = apiserver.create_namespace("agent-disc")
    # No controller-manager in this tier: create the default service account pods need.
    apiserver.kubectl("-n", ns, "create", "serviceaccount", "default", check=False)
    svc = create(apiserver, service(ns))
    replicaset = owner_chain(apiserver, svc)
    for name, node, owned_by in (
        ("dec-0", "gpu-node-a", replicaset),
        ("dec-far", "gpu-node-b", replicaset),
        ("dec-stray", "gpu-node-a", None),  # labelled like the others, but nobody's child
    ):
        apiserver.kubectl("apply", "-f", "-", input=json.dumps(engine_pod(ns, name, node, owned_by=owned_by)))
        set_running(apiserver, ns, name, "10.1.2.3")
    kubelet.answer = b"".join(
        pod_resources(ns, name, {"nvidia.com/gpu": [f"GPU-{name}"]}) for name in ("dec-0", "dec-stray")
    )

    gpus = PodResourcesSource(kubelet.socket)
    api = apiserver.api_client()
    events = KubeEventRecorder(api, "gpu-node-a")  # one client for discovery and its events
    discovery = KubeDiscovery(
        api,
        "gpu-node-a",
        gpus=gpus,
        choose_profile=lambda model, tp: "h100-sxm-llama-8b-tp1",
        events=events,
        watch_timeout_s=5,
    )
    updates = discovery.updates().__aiter__()

    def pod_uid(name: str) -> str:
        return str(apiserver.kubectl("-n", ns, "get", "pod", name, "-o", "jsonpath={.metadata.uid}").stdout)

    def events_on(name: str) -> list[dict[str, Any]]:
        selector = f"--field-selector=involvedObject.name={name}"
        out = apiserver.kubectl("-n", ns, "get", "events", selector, "-o", "json").stdout
        return list(json.loads(out)["items"])

    try:
        key = f"{ns}/dec-0"
        first = await next_matching(updates, lambda d: key in d)
        assert f"{ns}/dec-far" not in first, "a pod of another node must be ignored"
        assert f"{ns}/dec-stray" not in first, "a pod outside the owner chain must be ignored"
        assert discovery.refusals.current[f"{ns}/dec-stray"].reason == "not-owned"
        instance, policy = first[key]
        assert instance.gpus == ("GPU-dec-0",)
        assert instance.uid == pod_uid("dec-0"), "the instance names the pod's incarnation"
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

        stray_events = apiserver.wait_for(lambda: events_on("dec-stray"), timeout_s=10)
        assert [(e["type"], e["reason"]) for e in stray_events] == [("Warning", "JouleScaleNotControlled")]
        assert stray_events[0]["involvedObject"]["uid"] == pod_uid("dec-stray")
        assert "(not-owned)" in stray_events[0]["message"]
        assert events_on("dec-0") == [], "a controlled pod gets no Warning"
    finally:
        await updates.aclose()  # type: ignore[attr-defined]
        gpus.close()
        events.close()
