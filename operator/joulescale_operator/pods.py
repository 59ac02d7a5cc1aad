"""Pod templates: the engine container, GPU placement and the user's override (pure)."""

from __future__ import annotations

import copy
from typing import Any

from joulescale.api import GPU_PRODUCT_LABEL, GPU_RESOURCE, EnergyAwareLLMServiceSpec, RoleSpec
from joulescale_operator.engines import EngineLaunch
from joulescale_operator.identity import Role

ENGINE_CONTAINER = "engine"
HEALTH_PATH = "/health"

GPU_TOLERATION: dict[str, Any] = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def role_spec(spec: EnergyAwareLLMServiceSpec, role: Role) -> RoleSpec:
    if role == "prefill":
        return spec.prefill
    if role == "decode":
        return spec.decode
    raise ValueError(f"{role} is not an engine role")


def gpu_affinity(products: list[str]) -> dict[str, Any]:
    """A required node affinity: the pods only run on nodes of the listed GPU products."""
    term = {"matchExpressions": [{"key": GPU_PRODUCT_LABEL, "operator": "In", "values": list(products)}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def engine_resources(role: RoleSpec) -> dict[str, Any]:
    """The user's resources plus nvidia.com/gpu = tensor parallel size, as limit and request."""
    gpus = str(role.tensor_parallel_size)
    limits = {key: str(value) for key, value in (role.resources.limits or {}).items()}
    requests = {key: str(value) for key, value in (role.resources.requests or {}).items()}
    limits[GPU_RESOURCE] = gpus
    requests[GPU_RESOURCE] = gpus
    return {"limits": dict(sorted(limits.items())), "requests": dict(sorted(requests.items()))}


def engine_pod_template(
    spec: EnergyAwareLLMServiceSpec, role: Role, launch: EngineLaunch, labels: dict[str, str]
) -> dict[str, Any]:
    """The pod template of a prefill or decode Deployment, with the override merged last."""
    role_config = role_spec(spec, role)
    port = spec.engine.port
    probe_http = {"path": HEALTH_PATH, "port": "http"}
    container: dict[str, Any] = {
        "name": ENGINE_CONTAINER,
        "image": spec.engine.image,
        "command": launch.command,
        "env": [*launch.env, *(env.to_wire() for env in spec.engine.env)],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}, *launch.ports],
        "resources": engine_resources(role_config),
        "readinessProbe": {"httpGet": probe_http, "periodSeconds": 5, "failureThreshold": 3},
        "startupProbe": {"httpGet": probe_http, "periodSeconds": 10, "failureThreshold": 180},
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "affinity": gpu_affinity(role_config.gpu.products),
        "tolerations": [GPU_TOLERATION, *(t.to_wire() for t in role_config.tolerations)],
    }
    if role_config.node_selector:
        pod_spec["nodeSelector"] = dict(role_config.node_selector)
    metadata: dict[str, Any] = {"labels": dict(labels)}
    if launch.annotations:
        metadata["annotations"] = dict(launch.annotations)
    template = {"metadata": metadata, "spec": pod_spec}
    if role_config.pod_template:
        template = merge_override(template, role_config.pod_template)
    return template


def merge_override(base: Any, override: Any) -> Any:
    """Merge a partial object over a rendered one: maps merge, lists of named items merge by
    name (so containers can be patched), every other value is replaced by the override."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = merge_override(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if _named_list(base) and _named_list(override):
        overrides = {item["name"]: item for item in override}
        merged_list = [
            merge_override(item, overrides[item["name"]])
            if item["name"] in overrides
            else copy.deepcopy(item)
            for item in base
        ]
        known = {item["name"] for item in base}
        return merged_list + [copy.deepcopy(item) for item in override if item["name"] not in known]
    return copy.deepcopy(override)


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) and "name" in item for item in value)
