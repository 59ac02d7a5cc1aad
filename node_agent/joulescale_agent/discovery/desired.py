"""Pods + services + their owners -> the instances to control (pure; the watch code feeds it).

A pod is controlled only when all of this holds, each from a source the tenant cannot write:
- it is Running, not terminating, with role ``prefill`` or ``decode`` (routers hold no GPUs);
- the service its ``joulescale.io/service`` label names exists, parses, and is the end of the
  pod's owner chain (``ownership.check_owner_chain``: UIDs read from the apiserver);
- its GPUs are known to the configured source (the kubelet by default, ``gpus.py``);
- a profile matches the node's GPU product and the service's model and TP size;
- it has a pod IP: the metrics URL is ``http://<podIP>:<spec.engine.port>/metrics``, nothing else;
- none of its GPUs is controlled for another pod (``_claim_gpus``).
Anything else is refused with a reason (a metric label) and a detail (the log line), never
guessed. Nothing here reads a pod annotation.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from joulescale.api import EnergyAwareLLMService
from joulescale.control.policy import ClockBounds, Slo
from joulescale_agent.control.instance import EngineInstance, InstancePolicy
from joulescale_agent.discovery.gpus import GpuAssignments
from joulescale_agent.discovery.ownership import (
    ROLE_LABEL,
    SERVICE_LABEL,
    NotOwned,
    Objects,
    check_owner_chain,
)

log = logging.getLogger(__name__)

ROLES = ("prefill", "decode")

ProfileChooser = Callable[[str, int], str | None]
"""(model name, tensor parallel size) -> profile name for this node's GPU, or None."""

Instances = dict[str, tuple[EngineInstance, InstancePolicy]]


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    """A short constant, the metric's ``reason`` label: not-owned, no-service, gpus-unknown,
    gpu-conflict, no-profile, no-pod-ip."""
    detail: str


@dataclass(slots=True)
class Decision:
    instances: Instances = field(default_factory=dict)
    refused: dict[str, Refusal] = field(default_factory=dict)


def _bounds(service: EnergyAwareLLMService) -> ClockBounds | None:
    clocks = service.spec.energy.clocks
    if clocks.min_mhz is None and clocks.max_mhz is None:
        return None
    return ClockBounds(clocks.min_mhz or 0, clocks.max_mhz or 1_000_000)


def _base_clock(service: EnergyAwareLLMService, role: str) -> int | None:
    status = service.status
    if status is None:
        return None
    if status.plan is not None:
        planned = (
            status.plan.prefill_base_clock_mhz if role == "prefill" else status.plan.decode_base_clock_mhz
        )
        if planned is not None:
            return planned
    role_status = status.prefill if role == "prefill" else status.decode
    return role_status.base_clock_mhz if role_status is not None else None


def parse_service(obj: Mapping[str, Any]) -> EnergyAwareLLMService | None:
    try:
        return EnergyAwareLLMService.model_validate(obj)
    except ValidationError as error:
        meta = obj.get("metadata", {})
        log.warning(
            "service %s/%s does not parse (%d errors); its pods are left alone",
            meta.get("namespace"),
            meta.get("name"),
            error.error_count(),
        )
        return None


def metrics_url(pod_ip: Any, port: int) -> str | None:
    """The engine's endpoint from the pod IP (validated: it is only ever an address) and port."""
    try:
        address = ipaddress.ip_address(pod_ip) if isinstance(pod_ip, str) else None
    except ValueError:
        return None
    if address is None:
        return None
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{host}:{port}/metrics"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _candidate(
    pod: Mapping[str, Any],
    services: Mapping[str, EnergyAwareLLMService],
    replicasets: Objects,
    deployments: Objects,
    gpus: GpuAssignments,
    choose_profile: ProfileChooser,
) -> tuple[EngineInstance, InstancePolicy] | Refusal | None:
    """One pod alone: an instance, a refusal, or None for pods that are simply not engines now."""
    meta = _mapping(pod.get("metadata"))
    labels = _mapping(meta.get("labels"))
    role = labels.get(ROLE_LABEL)
    status = _mapping(pod.get("status"))
    if role not in ROLES or status.get("phase") != "Running" or meta.get("deletionTimestamp"):
        return None
    namespace, name, service_name = meta.get("namespace"), meta.get("name"), labels.get(SERVICE_LABEL)
    if not isinstance(namespace, str) or not isinstance(name, str) or not isinstance(service_name, str):
        return Refusal("no-service", "the pod has no service label")
    service = services.get(f"{namespace}/{service_name}")
    if service is None:
        return Refusal("no-service", f"no valid EnergyAwareLLMService {service_name:.63} in {namespace}")
    try:
        uid = service.metadata.get("uid")
        check_owner_chain(
            pod, role, service_name, uid if isinstance(uid, str) else "", replicasets, deployments
        )
    except NotOwned as error:
        return Refusal("not-owned", f"not created by service {service_name}: {error}")
    gpu_ids = gpus.gpus_for(pod)
    if not gpu_ids:
        return Refusal("gpus-unknown", gpus.unknown_because())
    spec = service.spec
    role_spec = spec.prefill if role == "prefill" else spec.decode
    profile = choose_profile(spec.model.name, role_spec.tensor_parallel_size)
    if profile is None:
        detail = f"no profile for {spec.model.name} TP{role_spec.tensor_parallel_size} on this node's GPU"
        return Refusal("no-profile", detail)
    url = metrics_url(status.get("podIP"), spec.engine.port)
    if url is None:
        return Refusal("no-pod-ip", "the pod has no valid IP yet")
    pod_uid = meta.get("uid")
    instance = EngineInstance(
        namespace,
        name,
        role,
        spec.engine.name,
        url,
        tuple(dict.fromkeys(gpu_ids)),
        service=service_name,
        uid=pod_uid if isinstance(pod_uid, str) else "",
    )
    policy = InstancePolicy(
        policy=spec.energy.policy,
        slo=Slo(float(spec.slo.ttft_ms), float(spec.slo.tpot_ms), int(spec.slo.percentile)),
        profile=profile,
        bounds=_bounds(service),
        base_clock_mhz=_base_clock(service, role),
        settings=spec.energy.policy_settings(),
        token_budget=spec.engine.max_batched_tokens,
    )
    return instance, policy


def _seniority(key: str, pod: Mapping[str, Any], controlled: Collection[str]) -> tuple[bool, str, str]:
    """The order in which pods claim GPUs: controlled now first, then the oldest, then by name."""
    created = _mapping(pod.get("metadata")).get("creationTimestamp")
    # RFC 3339 in UTC as the apiserver writes it sorts as time; a pod without one goes last.
    return (key not in controlled, created if isinstance(created, str) else "\uffff", key)


def desired_instances(
    pods: Mapping[str, Mapping[str, Any]],
    services: Mapping[str, EnergyAwareLLMService],
    replicasets: Objects,
    deployments: Objects,
    gpus: GpuAssignments,
    choose_profile: ProfileChooser,
    controlled: Collection[str] = (),
) -> Decision:
    """``pods``, ``replicasets``, ``deployments`` by ns/name (API dicts); ``services`` by ns/name;
    ``controlled``: the keys controlled now (they keep their GPUs in a conflict)."""
    decision = Decision()
    candidates: list[tuple[tuple[bool, str, str], str, tuple[EngineInstance, InstancePolicy]]] = []
    for key, pod in pods.items():
        found = _candidate(pod, services, replicasets, deployments, gpus, choose_profile)
        if isinstance(found, Refusal):
            decision.refused[key] = found
        elif found is not None:
            candidates.append((_seniority(key, pod, controlled), key, found))
    ordered = [(key, found) for _, key, found in sorted(candidates, key=lambda c: c[0])]
    claimed, conflicts = claim_gpus(ordered)
    decision.instances.update(claimed)
    decision.refused.update(conflicts)
    return decision


def claim_gpus(
    ordered: list[tuple[str, tuple[EngineInstance, InstancePolicy]]],
) -> tuple[Instances, dict[str, Refusal]]:
    """Instances in order of seniority claim their GPUs; one that finds a GPU taken is refused."""
    instances: Instances = {}
    refused: dict[str, Refusal] = {}
    holders: dict[str, str] = {}
    for key, (instance, policy) in ordered:
        taken = [gpu for gpu in instance.gpus if gpu in holders]
        if taken:
            refused[key] = Refusal(
                "gpu-conflict", f"GPU {taken[0]:.80} is controlled for {holders[taken[0]]}"
            )
            continue
        holders.update(dict.fromkeys(instance.gpus, key))
        instances[key] = (instance, policy)
    return instances, refused
