"""spec.energy's policy settings, stored by the real apiserver (with the CRD's defaults), reach
the agent's InstancePolicy, change with the service, and are refused there when out of range."""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale.api.crd import render_crd_yaml
from joulescale.control.settings import GovernorSettings, JouleScaleSettings, PolicySettings, VoltanaSettings
from joulescale_agent.control.instance import InstancePolicy
from joulescale_agent.discovery.desired import desired_instances, parse_service
from joulescale_agent.discovery.gpus import KubeletAssignments
from joulescale_operator.testing import apply, service_manifest

pytestmark = pytest.mark.integration

ENERGY = {
    "policy": "voltana",
    "margin": 0.2,
    "governor": {"minHoldMs": 250},
    "joulescale": {"mpcLevels": 6},
    "voltana": {"clocksMHz": [1005, 1410], "idleSeconds": 2},
}


@pytest.fixture(scope="module")
def plane(apiserver: ControlPlane) -> ControlPlane:
    apiserver.kubectl("apply", "--server-side", "-f", "-", input=render_crd_yaml())
    wait = ("wait", "--for=condition=Established", "--timeout=5s", "crd/energyawarellmservices.joulescale.io")
    apiserver.wait_for(lambda: apiserver.kubectl(*wait, check=False).returncode == 0, timeout_s=60)
    return apiserver


def _owned_pod(service: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The operator's decode Deployment, its ReplicaSet and a running pod, owned by ``service``."""
    meta = service["metadata"]
    ns, name = meta["namespace"], meta["name"]
    labels = {"joulescale.io/role": "decode", "joulescale.io/service": name}

    def owner(kind: str, owner_name: str, uid: str, api: str = "apps/v1") -> list[dict[str, Any]]:
        return [{"apiVersion": api, "kind": kind, "name": owner_name, "uid": uid, "controller": True}]

    deployment = {"metadata": {"name": f"{name}-decode", "namespace": ns, "uid": "dep", "labels": labels,
                               "ownerReferences": owner("EnergyAwareLLMService", name, meta["uid"],
                                                        "joulescale.io/v1alpha1")}}
    replicaset = {"metadata": {"name": f"{name}-decode-1", "namespace": ns, "uid": "rs", "labels": labels,
                               "ownerReferences": owner("Deployment", f"{name}-decode", "dep")}}
    pod = {"metadata": {"name": "d0", "namespace": ns, "uid": "pod", "labels": labels,
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                        "ownerReferences": owner("ReplicaSet", f"{name}-decode-1", "rs")},
           "spec": {"nodeName": "n1", "containers": [{"name": "engine"}]},
           "status": {"phase": "Running", "podIP": "10.0.0.7"}}
    return deployment, replicaset, pod


def _agent_policy(plane: ControlPlane, ns: str) -> InstancePolicy:
    stored = json.loads(plane.kubectl("get", "eals", "chat", "-n", ns, "-o", "json").stdout)
    service = parse_service(stored)
    assert service is not None
    deployment, replicaset, pod = _owned_pod(stored)

    def key(obj: dict[str, Any]) -> str:
        return f"{ns}/{obj['metadata']['name']}"

    decision = desired_instances({key(pod): pod}, {f"{ns}/chat": service}, {key(replicaset): replicaset},
                                 {key(deployment): deployment}, KubeletAssignments({f"{ns}/d0": ("GPU-1",)}),
                                 lambda model, tp: "a100-sxm4-80gb-llama-8b-tp1")
    assert decision.refused == {}
    return decision.instances[f"{ns}/d0"][1]


def test_settings_from_the_apiserver_reach_the_agents_instance_policy(plane: ControlPlane) -> None:
    ns = plane.create_namespace("settings")
    engine = {"image": "vllm/vllm-openai:v0.11.0", "maxBatchedTokens": 4096}
    apply(plane, service_manifest("chat", ns, engine=engine, energy=ENERGY))

    policy = _agent_policy(plane, ns)
    assert policy.policy == "voltana"
    assert policy.token_budget == 4096
    assert policy.settings == PolicySettings(
        margin=0.2, governor=GovernorSettings(min_hold_ms=250), joulescale=JouleScaleSettings(mpc_levels=6),
        voltana=VoltanaSettings(clocks_mhz=(1005, 1410), idle_s=2.0),
    )

    plane.kubectl("patch", "eals", "chat", "-n", ns, "--type=merge", "-p",
                  json.dumps({"spec": {"energy": {"margin": 0.3, "decode": {"kvGuardUsage": 0.8}}}}))
    changed = _agent_policy(plane, ns)
    assert (changed.settings.margin, changed.settings.decode.kv_guard_usage) == (0.3, 0.8)
    assert changed.settings.voltana == policy.settings.voltana
    assert changed != policy, "a changed setting is a changed InstancePolicy: update_policy rebuilds the brain"


@pytest.mark.parametrize(
    ("energy", "field"),
    [
        ({"decode": {"kvGuardUsage": 1.5}}, "spec.energy.decode.kvGuardUsage"),
        ({"margin": 1}, "spec.energy.margin"),
        ({"voltana": {"clocksMHz": [0]}}, "spec.energy.voltana.clocksMHz[0]"),
        ({"governor": {"minHoldMs": -5}}, "spec.energy.governor.minHoldMs"),
        ({"policy": "turbo"}, "spec.energy.policy"),
    ],
)
def test_the_apiserver_refuses_an_out_of_range_setting_naming_it(
    plane: ControlPlane, energy: dict[str, Any], field: str
) -> None:
    result = apply(plane, service_manifest("bad", "default", energy=energy), check=False)
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
