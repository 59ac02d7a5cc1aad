"""Pods + services -> the instances to control (pure; the watch code only feeds it).

A pod is controlled when it runs on this node, carries ``joulescale.io/role`` = prefill|decode
and ``joulescale.io/service``, is Running with an IP, its service exists and parses, its GPUs
are known and a profile matches. Anything else is skipped with a reason, never guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from joulescale.api import EnergyAwareLLMService
from joulescale.control.policy import ClockBounds, Slo
from joulescale_agent.control.instance import EngineInstance, InstancePolicy
from joulescale_agent.discovery.gpus import GpuResolver

log = logging.getLogger(__name__)

ROLE_LABEL = "joulescale.io/role"
SERVICE_LABEL = "joulescale.io/service"
PROFILE_ANNOTATION = "joulescale.io/profile"
METRICS_URL_ANNOTATION = "joulescale.io/metrics-url"
"""Overrides http://<podIP>:<spec.engine.port>/metrics (tests, sidecars, non-standard ports)."""
ROLES = ("prefill", "decode")

ProfileChooser = Callable[[str, int], str | None]
"""(model name, tensor parallel size) -> profile name for this node's GPU, or None."""


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


def desired_instances(
    pods: Mapping[str, Mapping[str, Any]],
    services: Mapping[str, EnergyAwareLLMService],
    gpus: GpuResolver,
    choose_profile: ProfileChooser,
) -> dict[str, tuple[EngineInstance, InstancePolicy]]:
    """``pods`` by ns/name (API dicts), ``services`` by ns/name."""
    desired: dict[str, tuple[EngineInstance, InstancePolicy]] = {}
    for key, pod in pods.items():
        meta = pod.get("metadata", {})
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        role = labels.get(ROLE_LABEL)
        if role not in ROLES:
            continue  # routers and unknown roles have no GPUs to control
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or meta.get("deletionTimestamp"):
            continue
        namespace = meta.get("namespace", "")
        service = services.get(f"{namespace}/{labels.get(SERVICE_LABEL, '')}")
        if service is None:
            continue
        gpu_ids = gpus.gpus_for(pod)
        if not gpu_ids:
            log.warning("%s: GPUs unknown; not controlling it", key)
            continue
        spec = service.spec
        role_spec = spec.prefill if role == "prefill" else spec.decode
        profile = annotations.get(PROFILE_ANNOTATION) or choose_profile(
            spec.model.name, role_spec.tensor_parallel_size
        )
        if profile is None:
            log.warning(
                "%s: no profile for %s TP%d on this node",
                key,
                spec.model.name,
                role_spec.tensor_parallel_size,
            )
            continue
        url = annotations.get(METRICS_URL_ANNOTATION)
        if not url:
            if not status.get("podIP"):
                continue
            url = f"http://{status['podIP']}:{spec.engine.port}/metrics"
        instance = EngineInstance(
            namespace,
            meta["name"],
            role,
            spec.engine.name,
            url,
            gpu_ids,
            service=labels.get(SERVICE_LABEL, ""),
        )
        policy = InstancePolicy(
            policy=spec.energy.policy,
            slo=Slo(float(spec.slo.ttft_ms), float(spec.slo.tpot_ms), int(spec.slo.percentile)),
            profile=profile,
            bounds=_bounds(service),
            base_clock_mhz=_base_clock(service, role),
        )
        desired[key] = (instance, policy)
    return desired
