"""Pods + services + owners -> instances to control; what a tenant writes on a pod never counts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.policy import ClockBounds
from joulescale.control.settings import BiScaleSettings, GovernorSettings, JouleScaleSettings, PolicySettings
from joulescale_agent.discovery.desired import Decision, desired_instances, parse_service
from joulescale_agent.discovery.gpus import KubeletAssignments, PodSpecAssignments
from joulescale_agent.discovery.static import parse_instances, without_conflicts

SERVICE: dict[str, Any] = {
    "apiVersion": "joulescale.io/v1alpha1",
    "kind": "EnergyAwareLLMService",
    "metadata": {"name": "chat", "namespace": "ns", "uid": "uid-svc"},
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


def ref(kind: str, name: str, uid: str, api_version: str = "apps/v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}


class Cluster:
    """What the apiserver holds: services, the operator's Deployments and ReplicaSets, pods."""

    def __init__(self) -> None:
        self.services: dict[str, Any] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.replicasets: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}

    def add_service(self, namespace: str = "ns", name: str = "chat") -> None:
        obj = copy.deepcopy(SERVICE)
        obj["metadata"].update(namespace=namespace, name=name, uid=f"uid-{namespace}-{name}")
        parsed = parse_service(obj)
        assert parsed is not None
        self.services[f"{namespace}/{name}"] = parsed

    def add_chain(self, namespace: str = "ns", service: str = "chat", role: str = "decode") -> str:
        """The Deployment and ReplicaSet the operator and the Deployment controller create."""
        labels = {"joulescale.io/role": role, "joulescale.io/service": service}
        deployment, replicaset = f"{service}-{role}", f"{service}-{role}-7c9f"
        self.deployments[f"{namespace}/{deployment}"] = {
            "metadata": {
                "name": deployment,
                "namespace": namespace,
                "uid": f"uid-dep-{namespace}-{deployment}",
                "labels": labels,
                "ownerReferences": [
                    ref(
                        "EnergyAwareLLMService",
                        service,
                        f"uid-{namespace}-{service}",
                        "joulescale.io/v1alpha1",
                    )
                ],
            }
        }
        self.replicasets[f"{namespace}/{replicaset}"] = {
            "metadata": {
                "name": replicaset,
                "namespace": namespace,
                "uid": f"uid-rs-{namespace}-{replicaset}",
                "labels": labels,
                "ownerReferences": [ref("Deployment", deployment, f"uid-dep-{namespace}-{deployment}")],
            }
        }
        return replicaset

    def add_pod(
        self,
        name: str,
        namespace: str = "ns",
        role: str = "decode",
        service: str = "chat",
        replicaset: str | None = "chat-decode-7c9f",
        created: str = "2026-01-01T00:00:00Z",
        ip: Any = "10.0.0.7",
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-pod-{name}",
            "creationTimestamp": created,
            "labels": {"joulescale.io/role": role, "joulescale.io/service": service},
        }
        if replicaset is not None:
            meta["ownerReferences"] = [ref("ReplicaSet", replicaset, f"uid-rs-{namespace}-{replicaset}")]
        obj = {
            "metadata": meta,
            "spec": {"nodeName": "n1", "containers": [{"name": "engine"}]},
            "status": {"phase": "Running", "podIP": ip},
        }
        self.pods[f"{namespace}/{name}"] = obj
        return obj

    def decide(self, gpus: Any, controlled: tuple[str, ...] = ()) -> Decision:
        return desired_instances(
            self.pods, self.services, self.replicasets, self.deployments, gpus, choose, controlled
        )


def choose(model: str, tp: int) -> str | None:
    return "h100-sxm-llama-8b-tp1" if model.endswith("8B-Instruct") and tp == 1 else None


def kubelet(**by_pod: tuple[str, ...]) -> KubeletAssignments:
    return KubeletAssignments({f"ns/{k}" if "/" not in k else k: v for k, v in by_pod.items()})


@pytest.fixture
def cluster() -> Cluster:
    c = Cluster()
    c.add_service()
    c.add_chain()
    return c


def test_a_pod_of_the_operators_deployment_becomes_an_instance_with_its_services_policy(
    cluster: Cluster,
) -> None:
    cluster.add_pod("d0")
    decision = cluster.decide(kubelet(d0=("GPU-1", "GPU-2")))
    instance, policy = decision.instances["ns/d0"]
    assert decision.refused == {}
    assert instance.metrics_url == "http://10.0.0.7:8123/metrics"
    assert instance.gpus == ("GPU-1", "GPU-2")
    assert (instance.role, instance.engine, instance.service) == ("decode", "vllm", "chat")
    assert policy.policy == "biscale"
    assert (policy.slo.ttft_ms, policy.slo.tpot_ms, policy.slo.percentile) == (600, 50, 95)
    assert policy.bounds == ClockBounds(900, 1800)
    assert policy.base_clock_mhz == 1200
    assert policy.profile == "h100-sxm-llama-8b-tp1"


def test_the_prefill_pod_gets_the_prefill_base_clock_and_none_when_unplanned(cluster: Cluster) -> None:
    cluster.add_chain(role="prefill")
    cluster.add_pod("p0", role="prefill", replicaset="chat-prefill-7c9f")
    assert cluster.decide(kubelet(p0=("GPU-1",))).instances["ns/p0"][1].base_clock_mhz is None


@pytest.mark.parametrize("where", ["annotation", "env"])
def test_an_attacker_naming_the_victims_gpu_controls_nothing(cluster: Cluster, where: str) -> None:
    """The attacker has a complete owner chain to a service of its own namespace, but no GPU of
    the kubelet's: what it writes about GPUs on its pod is never read."""
    victim = cluster.add_pod("victim", created="2026-01-02T00:00:00Z")
    del victim  # the victim is younger: seniority would not save it, the kubelet does
    cluster.add_service("evil")
    cluster.add_chain("evil")
    attacker = cluster.add_pod("attacker", namespace="evil", replicaset="chat-decode-7c9f")
    if where == "annotation":
        attacker["metadata"]["annotations"] = {"joulescale.io/gpus": "GPU-victim"}
    else:
        attacker["spec"]["containers"][0]["env"] = [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "GPU-victim"}]
    decision = cluster.decide(kubelet(victim=("GPU-victim",)))
    assert list(decision.instances) == ["ns/victim"]
    assert decision.instances["ns/victim"][0].gpus == ("GPU-victim",)
    assert decision.refused["evil/attacker"].reason == "gpus-unknown"


def test_an_unreachable_kubelet_means_nothing_is_controlled(cluster: Cluster) -> None:
    pod = cluster.add_pod("d0")
    pod["metadata"]["annotations"] = {"joulescale.io/gpus": "GPU-1"}
    decision = cluster.decide(KubeletAssignments({}, "UNAVAILABLE"))
    assert decision.instances == {}
    assert decision.refused["ns/d0"].reason == "gpus-unknown"
    assert "UNAVAILABLE" in decision.refused["ns/d0"].detail


def test_a_pod_without_an_owner_chain_is_not_controlled(cluster: Cluster) -> None:
    cluster.add_pod("bare", replicaset=None)
    decision = cluster.decide(kubelet(bare=("GPU-1",)))
    assert decision.instances == {}
    assert decision.refused["ns/bare"].reason == "not-owned"


def _forge(cluster: Cluster, how: str) -> None:
    pod = cluster.pods["ns/d0"]
    rs = cluster.replicasets["ns/chat-decode-7c9f"]
    dep = cluster.deployments["ns/chat-decode"]
    if how == "pod-ref-wrong-uid":
        pod["metadata"]["ownerReferences"][0]["uid"] = "uid-guessed"
    elif how == "rs-ref-wrong-uid":
        rs["metadata"]["ownerReferences"][0]["uid"] = "uid-guessed"
    elif how == "dep-ref-wrong-uid":
        dep["metadata"]["ownerReferences"][0]["uid"] = "uid-guessed"
    elif how == "pod-ref-not-controller":
        pod["metadata"]["ownerReferences"][0]["controller"] = False
    elif how == "pod-ref-two-controllers":
        pod["metadata"]["ownerReferences"].append(dict(pod["metadata"]["ownerReferences"][0], name="x"))
    elif how == "pod-ref-to-deployment":
        pod["metadata"]["ownerReferences"] = [ref("Deployment", "chat-decode", "uid-dep-ns-chat-decode")]
    elif how == "pod-ref-straight-to-service":
        pod["metadata"]["ownerReferences"] = [
            ref("EnergyAwareLLMService", "chat", "uid-ns-chat", "joulescale.io/v1alpha1")
        ]
    elif how == "rs-missing":
        del cluster.replicasets["ns/chat-decode-7c9f"]
    elif how == "deployment-of-another-service":
        cluster.add_service(name="other")
        dep["metadata"]["ownerReferences"][0].update(name="other", uid="uid-ns-other")
    elif how == "deployment-of-another-role":
        dep["metadata"]["labels"]["joulescale.io/role"] = "prefill"
    elif how == "deployment-not-a-services":
        dep["metadata"]["ownerReferences"][0].update(kind="ConfigMap", apiVersion="v1")
    elif how == "chain-in-another-namespace":
        # the pod names a ReplicaSet that exists, but in another namespace
        cluster.add_chain("other-ns")
        del cluster.replicasets["ns/chat-decode-7c9f"]
        pod["metadata"]["ownerReferences"][0]["uid"] = "uid-rs-other-ns-chat-decode-7c9f"
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "pod-ref-wrong-uid",
        "rs-ref-wrong-uid",
        "dep-ref-wrong-uid",
        "pod-ref-not-controller",
        "pod-ref-two-controllers",
        "pod-ref-to-deployment",
        "pod-ref-straight-to-service",
        "rs-missing",
        "deployment-of-another-service",
        "deployment-of-another-role",
        "deployment-not-a-services",
        "chain-in-another-namespace",
    ],
)
def test_a_forged_or_broken_owner_chain_is_not_controlled(cluster: Cluster, how: str) -> None:
    cluster.add_pod("d0")
    _forge(cluster, how)
    decision = cluster.decide(kubelet(d0=("GPU-1",)))
    assert decision.instances == {}
    assert decision.refused["ns/d0"].reason == "not-owned"


def test_metrics_url_and_profile_annotations_are_ignored(cluster: Cluster) -> None:
    pod = cluster.add_pod("d0")
    pod["metadata"]["annotations"] = {
        "joulescale.io/profile": "h100-sxm-llama-70b-tp4",
        "joulescale.io/metrics-url": "http://169.254.169.254/latest/meta-data",
    }
    instance, policy = cluster.decide(kubelet(d0=("GPU-1",))).instances["ns/d0"]
    assert instance.metrics_url == "http://10.0.0.7:8123/metrics"
    assert policy.profile == "h100-sxm-llama-8b-tp1"


@pytest.mark.parametrize(
    "ip",
    ["", None, 5, "10.0.0.7:80/x", "evil.example", "10.0.0.7/metrics#", "http://10.0.0.7", ["10.0.0.7"]],
)
def test_a_pod_ip_that_is_not_an_address_gives_no_metrics_url(cluster: Cluster, ip: Any) -> None:
    cluster.add_pod("d0", ip=ip)
    decision = cluster.decide(kubelet(d0=("GPU-1",)))
    assert decision.instances == {}
    assert decision.refused["ns/d0"].reason == "no-pod-ip"


def test_an_ipv6_pod_ip_is_bracketed(cluster: Cluster) -> None:
    cluster.add_pod("d0", ip="fd00::7")
    assert cluster.decide(kubelet(d0=("GPU-1",))).instances["ns/d0"][0].metrics_url == (
        "http://[fd00::7]:8123/metrics"
    )


def test_two_pods_on_one_gpu_the_older_wins_and_the_other_is_refused(cluster: Cluster) -> None:
    cluster.add_pod("young", created="2026-01-02T00:00:00Z")
    cluster.add_pod("old", created="2026-01-01T00:00:00Z")
    gpus = kubelet(young=("GPU-2", "GPU-1"), old=("GPU-1",))
    decision = cluster.decide(gpus)
    assert list(decision.instances) == ["ns/old"]
    assert decision.refused["ns/young"].reason == "gpu-conflict"
    assert "GPU-1" in decision.refused["ns/young"].detail
    assert "ns/old" in decision.refused["ns/young"].detail
    # the instance controlled now keeps its GPU even against an older pod
    decision = cluster.decide(gpus, controlled=("ns/young",))
    assert list(decision.instances) == ["ns/young"]
    assert decision.refused["ns/old"].reason == "gpu-conflict"


def test_on_a_tie_of_age_the_name_decides(cluster: Cluster) -> None:
    for name in ("b", "a", "c"):
        cluster.add_pod(name)
    decision = cluster.decide(kubelet(a=("GPU-1",), b=("GPU-1",), c=("GPU-1",)))
    assert list(decision.instances) == ["ns/a"]
    assert {k: r.reason for k, r in decision.refused.items()} == {
        "ns/b": "gpu-conflict",
        "ns/c": "gpu-conflict",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": 5},
        {"metadata": {"labels": ["x"], "name": "d0", "namespace": "ns"}},
        {"metadata": {"labels": {"joulescale.io/role": "decode", "joulescale.io/service": 7}}},
        {"metadata": {"labels": {"joulescale.io/role": "decode", "joulescale.io/service": "chat"}}},
        {"ownerReferences": "x"},
        {"ownerReferences": [5, None]},
        {"ownerReferences": [{"controller": True, "kind": "ReplicaSet", "apiVersion": "apps/v1"}]},
        {"ownerReferences": [{"controller": "true", **ref("ReplicaSet", "chat-decode-7c9f", "uid-x")}]},
        {"ownerReferences": [ref("ReplicaSet", ["chat-decode-7c9f"], "uid-x")]},
        {"status": "Running"},
        {"status": None},
        {"spec": 5},
    ],
)
def test_hostile_pod_shapes_are_refused_or_skipped_without_an_error(cluster: Cluster, change: Any) -> None:
    pod = cluster.add_pod("d0")
    key, value = next(iter(change.items()))
    if key == "ownerReferences":
        pod["metadata"]["ownerReferences"] = value
    else:
        pod[key] = value
    assert cluster.decide(PodSpecAssignments()).instances == {}
    # the kubelet's GPUs do not depend on the pod's spec: a malformed one changes nothing
    assert list(cluster.decide(kubelet(d0=("GPU-1",))).instances) == (["ns/d0"] if key == "spec" else [])


def test_pods_that_are_not_engines_now_are_skipped_silently(cluster: Cluster) -> None:
    cluster.add_pod("router", role="router")
    cluster.add_pod("pending")["status"]["phase"] = "Pending"
    cluster.add_pod("leaving")["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    decision = cluster.decide(kubelet(router=("GPU-1",), pending=("GPU-2",), leaving=("GPU-3",)))
    assert decision == Decision()


def test_a_pod_of_no_known_service_is_refused(cluster: Cluster) -> None:
    cluster.add_pod("d0", service="other")
    assert cluster.decide(kubelet(d0=("GPU-1",))).refused["ns/d0"].reason == "no-service"


def test_a_service_that_does_not_parse_is_ignored() -> None:
    broken = copy.deepcopy(SERVICE)
    broken["spec"]["slo"] = {"ttftMs": -1}
    assert parse_service(broken) is None


def test_the_unsafe_pod_spec_source_reads_the_annotation_or_an_explicit_env() -> None:
    source = PodSpecAssignments()
    with_env: dict[str, Any] = {"metadata": {}, "spec": {"containers": [{"name": "engine"}]}}
    with_env["spec"]["containers"][0]["env"] = [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "GPU-9"}]
    assert source.gpus_for(with_env) == ("GPU-9",)
    with_env["metadata"]["annotations"] = {"joulescale.io/gpus": "GPU-1,GPU-2"}
    assert source.gpus_for(with_env) == ("GPU-1", "GPU-2")
    with_env["metadata"]["annotations"] = {}
    with_env["spec"]["containers"][0]["env"][0]["value"] = "all"
    assert source.gpus_for(with_env) is None


def test_a_static_file_naming_one_gpu_twice_controls_it_once() -> None:
    def entry(pod: str, gpus: list[str]) -> dict[str, Any]:
        return {
            "pod": pod,
            "role": "decode",
            "metrics_url": "http://127.0.0.1:1/metrics",
            "gpus": gpus,
            "policy": {"policy": "static", "profile": "p", "slo": {"ttft_ms": 1, "tpot_ms": 1}},
        }

    parsed = parse_instances({"instances": [entry("a", ["GPU-1"]), entry("b", ["GPU-2", "GPU-1"])]})
    assert list(without_conflicts(parsed, ())) == ["default/a"]
    assert list(without_conflicts(parsed, ("default/b",))) == ["default/b"]


def test_the_services_settings_and_token_budget_reach_the_instance_policy() -> None:
    """spec.energy's settings and spec.engine.maxBatchedTokens (the value the operator renders
    into the engine's args) are what the agent hands the controller factory."""
    c = Cluster()
    service = copy.deepcopy(SERVICE)
    service["metadata"]["uid"] = "uid-ns-chat"
    service["spec"]["engine"]["maxBatchedTokens"] = 2048
    service["spec"]["energy"].update(margin=0.25, biscale={"mpcLevels": 4}, governor={"minHoldMs": 50})
    parsed = parse_service(service)
    assert parsed is not None
    c.services["ns/chat"] = parsed
    c.add_chain()
    c.add_pod("d0")
    policy = c.decide(kubelet(d0=("GPU-1",))).instances["ns/d0"][1]
    assert policy.token_budget == 2048
    assert policy.settings == PolicySettings(
        margin=0.25, biscale=BiScaleSettings(mpc_levels=4), governor=GovernorSettings(min_hold_ms=50)
    )


def test_a_service_that_sets_no_setting_gives_the_defaults(cluster: Cluster) -> None:
    cluster.add_pod("d0")
    policy = cluster.decide(kubelet(d0=("GPU-1",))).instances["ns/d0"][1]
    assert (policy.settings, policy.token_budget) == (PolicySettings(), DEFAULT_TOKEN_BUDGET)


def test_a_static_file_carries_the_settings_in_spec_energys_wire_names() -> None:
    item = {
        "pod": "a", "role": "decode", "metrics_url": "http://127.0.0.1:1/metrics", "gpus": ["GPU-1"],
        "policy": {"policy": "joulescale", "profile": "p", "slo": {"ttft_ms": 1, "tpot_ms": 1},
                   "energy": {"joulescale": {"kvSoftUsage": 0.5}}, "token_budget": 1024},
    }
    policy = parse_instances({"instances": [item]})["default/a"][1]
    assert policy.settings == PolicySettings(joulescale=JouleScaleSettings(kv_soft_usage=0.5))
    assert policy.token_budget == 1024
    item["policy"]["energy"] = {"joulescale": {"kvSoftUsage": 5}}  # type: ignore[index]
    with pytest.raises(ValueError, match="kvSoftUsage"):
        parse_instances({"instances": [item]})
