"""Pods + services -> instances to control, and the GPU resolvers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from joulescale.control.policy import ClockBounds
from joulescale_agent.discovery.desired import desired_instances, parse_service
from joulescale_agent.discovery.gpus import AnnotationResolver, EnvResolver, default_resolver

SERVICE: dict[str, Any] = {
    "apiVersion": "joulescale.io/v1alpha1",
    "kind": "EnergyAwareLLMService",
    "metadata": {"name": "chat", "namespace": "ns"},
    "spec": {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "port": 8123},
        "prefill": {"replicas": 1, "tensorParallelSize": 1, "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}},
        "decode": {"replicas": 1, "tensorParallelSize": 1, "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}},
        "slo": {"ttftMs": 600, "tpotMs": 50, "percentile": 95},
        "energy": {"policy": "biscale", "clocks": {"minMHz": 900, "maxMHz": 1800}},
    },
    "status": {"plan": {"decodeBaseClockMHz": 1200}},
}


def pod(name: str, role: str = "decode", **over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"joulescale.io/role": role, "joulescale.io/service": "chat"},
            "annotations": {"joulescale.io/gpus": "GPU-1,GPU-2"},
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "engine"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.7"},
    }
    for path, value in over.items():
        section, key = path.split("__")
        obj[section][key] = value
    return obj


def choose(model: str, tp: int) -> str | None:
    return "h100-sxm-llama-8b-tp1" if model.endswith("8B-Instruct") and tp == 1 else None


def services(obj: dict[str, Any] = SERVICE) -> dict[str, Any]:
    parsed = parse_service(obj)
    assert parsed is not None
    return {"ns/chat": parsed}


def test_a_running_labelled_pod_becomes_an_instance_with_its_services_policy() -> None:
    desired = desired_instances({"ns/d0": pod("d0")}, services(), default_resolver(), choose)
    instance, policy = desired["ns/d0"]
    assert instance.metrics_url == "http://10.0.0.7:8123/metrics"
    assert instance.gpus == ("GPU-1", "GPU-2")
    assert (instance.role, instance.engine, instance.service) == ("decode", "vllm", "chat")
    assert policy.policy == "biscale"
    assert (policy.slo.ttft_ms, policy.slo.tpot_ms, policy.slo.percentile) == (600, 50, 95)
    assert policy.bounds == ClockBounds(900, 1800)
    assert policy.base_clock_mhz == 1200
    assert policy.profile == "h100-sxm-llama-8b-tp1"


def test_the_prefill_pod_gets_the_prefill_base_clock_and_none_when_unplanned() -> None:
    desired = desired_instances({"ns/p0": pod("p0", "prefill")}, services(), default_resolver(), choose)
    assert desired["ns/p0"][1].base_clock_mhz is None


@pytest.mark.parametrize(
    "candidate",
    [
        pod("x", role="router"),
        pod("x", status__phase="Pending"),
        pod("x", metadata__deletionTimestamp="2026-01-01T00:00:00Z"),
        pod("x", metadata__annotations={}),
        pod("x", metadata__labels={"joulescale.io/role": "decode", "joulescale.io/service": "other"}),
    ],
    ids=["router", "pending", "terminating", "gpus-unknown", "no-such-service"],
)
def test_pods_that_cannot_be_controlled_safely_are_skipped(candidate: dict[str, Any]) -> None:
    assert desired_instances({"ns/x": candidate}, services(), default_resolver(), choose) == {}


def test_annotations_override_profile_and_metrics_url() -> None:
    candidate = pod("d0")
    candidate["metadata"]["annotations"].update(
        {
            "joulescale.io/profile": "h100-sxm-llama-70b-tp4",
            "joulescale.io/metrics-url": "http://127.0.0.1:9/m",
        }
    )
    instance, policy = desired_instances({"ns/d0": candidate}, services(), default_resolver(), choose)[
        "ns/d0"
    ]
    assert instance.metrics_url == "http://127.0.0.1:9/m"
    assert policy.profile == "h100-sxm-llama-70b-tp4"


def test_a_service_that_does_not_parse_is_ignored() -> None:
    broken = copy.deepcopy(SERVICE)
    broken["spec"]["slo"] = {"ttftMs": -1}
    assert parse_service(broken) is None


def test_gpu_resolvers_read_the_annotation_or_an_explicit_env() -> None:
    with_env = pod("d0", metadata__annotations={})
    with_env["spec"]["containers"][0]["env"] = [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "GPU-9"}]
    assert AnnotationResolver().gpus_for(with_env) is None
    assert EnvResolver().gpus_for(with_env) == ("GPU-9",)
    assert default_resolver().gpus_for(with_env) == ("GPU-9",)
    with_env["spec"]["containers"][0]["env"][0]["value"] = "all"
    assert default_resolver().gpus_for(with_env) is None
