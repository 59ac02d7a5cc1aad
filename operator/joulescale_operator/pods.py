"""Pod templates: the engine container, GPU placement and the user's override (pure)."""

from __future__ import annotations

import copy
from typing import Any

from joulescale.api import (
    ENGINE_CONTAINER,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    EnergyAwareLLMServiceSpec,
    PodTemplateOverride,
    RoleSpec,
)
from joulescale_operator.enginehook import HookRender
from joulescale_operator.engines import EngineLaunch
from joulescale_operator.enginestorage import engine_storage
from joulescale_operator.identity import Role
from joulescale_operator.podguard import SIDECAR_GPU_ENV, ForbiddenPodTemplate, host_access_problems

__all__ = ["ENGINE_CONTAINER", "ForbiddenPodTemplate", "engine_pod_template", "merge_override", "role_spec"]
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


def engine_env(managed: list[dict[str, Any]], user: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's variables, then the user's: a user variable of the same name replaces the
    operator's (e.g. HF_HOME pointed elsewhere) instead of appearing twice."""
    overridden = {item["name"] for item in user}
    return [*(item for item in managed if item["name"] not in overridden), *user]


def engine_pod_template(
    spec: EnergyAwareLLMServiceSpec,
    role: Role,
    launch: EngineLaunch,
    labels: dict[str, str],
    hook: HookRender | None = None,
) -> dict[str, Any]:
    """The pod template of a prefill or decode Deployment, with the override merged last."""
    hook = hook or HookRender()
    role_config = role_spec(spec, role)
    port = spec.engine.port
    probe_http = {"path": HEALTH_PATH, "port": "http"}
    storage = engine_storage(spec, role_config)
    container: dict[str, Any] = {
        "name": ENGINE_CONTAINER,
        "image": spec.engine.image,
        "command": launch.command,
        "env": engine_env([*launch.env, *storage.env, *hook.env], [env.to_wire() for env in spec.engine.env]),
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}, *launch.ports],
        "resources": engine_resources(role_config),
        "volumeMounts": [*storage.mounts, *hook.mounts],
        "readinessProbe": {"httpGet": probe_http, "periodSeconds": 5, "failureThreshold": 3},
        "startupProbe": {"httpGet": probe_http, "periodSeconds": 10, "failureThreshold": 180},
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "affinity": gpu_affinity(role_config.gpu.products),
        "tolerations": [GPU_TOLERATION, *(t.to_wire() for t in role_config.tolerations)],
        "volumes": [*storage.volumes, *hook.volumes],
    }
    if hook.init_containers:
        pod_spec["initContainers"] = hook.init_containers
    if role_config.node_selector:
        pod_spec["nodeSelector"] = dict(role_config.node_selector)
    metadata: dict[str, Any] = {"labels": dict(labels)}
    if launch.annotations:
        metadata["annotations"] = dict(launch.annotations)
    template = {"metadata": metadata, "spec": pod_spec}
    rendered = template
    if role_config.pod_template is not None:
        template = merge_override(template, role_config.pod_template)
    problems = host_access_problems(rendered, template)
    if problems:
        raise ForbiddenPodTemplate(
            "; ".join(f"spec.{role}.podTemplate.{problem}: not allowed (host access)" for problem in problems)
        )
    return template


def merge_override(template: dict[str, Any], override: PodTemplateOverride) -> dict[str, Any]:
    """The rendered template with the typed override merged in: the operator's labels and
    annotations win, containers merge by name, volumes replace by name, tolerations are added, and the
    override's required node terms are each ANDed with the GPU product term.

    The merged template is checked again (see podguard), so that no bug here and no object
    stored before the schema refused a field can make the operator write host access."""
    merged = copy.deepcopy(template)
    wire = override.to_wire()
    metadata, pod_override = wire.get("metadata", {}), wire.get("spec", {})
    for key in ("labels", "annotations"):
        if key in metadata:
            merged["metadata"][key] = {**metadata[key], **merged["metadata"].get(key, {})}
    pod = merged["spec"]
    if "containers" in pod_override:
        pod["containers"] = _merge_named(pod["containers"], pod_override["containers"])
    if "volumes" in pod_override:
        pod["volumes"] = _replace_named(pod.get("volumes", []), pod_override["volumes"])
    pod["containers"] = [_without_gpus(c) if c["name"] != ENGINE_CONTAINER else c for c in pod["containers"]]
    if "tolerations" in pod_override:
        pod["tolerations"] = [*pod["tolerations"], *pod_override["tolerations"]]
    if "affinity" in pod_override:
        pod["affinity"] = _merge_affinity(pod["affinity"], pod_override["affinity"])
    for key in ("priorityClassName", "imagePullSecrets"):
        if key in pod_override:
            pod[key] = pod_override[key]
    return merged


def _without_gpus(sidecar: dict[str, Any]) -> dict[str, Any]:
    """A sidecar sees no GPU through the NVIDIA container runtime, whatever its envFrom holds:
    an explicit env entry wins over envFrom keys."""
    env = [e for e in sidecar.get("env", []) if e.get("name") != SIDECAR_GPU_ENV["name"]]
    return {**sidecar, "env": [*env, SIDECAR_GPU_ENV]}


def _merge_named(base: list[dict[str, Any]], override: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items of the same name merge (maps merge, named lists merge by name); new names are added."""
    overrides = {item["name"]: item for item in override}
    known = {item["name"] for item in base}
    merged = [
        _merge_item(item, overrides[item["name"]]) if item["name"] in overrides else item for item in base
    ]
    return merged + [item for item in override if item["name"] not in known]


def _replace_named(base: list[dict[str, Any]], override: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A volume has one source: an override volume of a rendered name replaces it whole (e.g. a
    PVC named model-cache instead of the emptyDir), so no merge leaves two sources."""
    overrides = {item["name"]: item for item in override}
    known = {item["name"] for item in base}
    return [overrides.get(item["name"], item) for item in base] + [
        item for item in override if item["name"] not in known
    ]


def _merge_item(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merge_item(base[k], v) if k in base else v for k, v in override.items()}}
    if _named_list(base) and _named_list(override):
        return _merge_named(base, override)
    return override


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) and "name" in item for item in value)


def _merge_affinity(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The override's affinity, with the GPU product term kept: ANDed into each required node term."""
    merged = {**base, **override}
    gpu_required = base["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    gpu_expressions = [e for term in gpu_required["nodeSelectorTerms"] for e in term["matchExpressions"]]
    node = dict(override.get("nodeAffinity") or {})
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    terms = required.get("nodeSelectorTerms") if isinstance(required, dict) else None
    if isinstance(required, dict) and isinstance(terms, list) and terms:
        node["requiredDuringSchedulingIgnoredDuringExecution"] = {
            **required,
            "nodeSelectorTerms": [_and_gpu(term, gpu_expressions) for term in terms],
        }
    else:
        node["requiredDuringSchedulingIgnoredDuringExecution"] = gpu_required
    merged["nodeAffinity"] = node
    return merged


def _and_gpu(term: Any, gpu_expressions: list[dict[str, Any]]) -> Any:
    """The term with the GPU product expressions added; a malformed term is kept as it is, for
    the apiserver's dry run of the Deployment to refuse."""
    expressions = term.get("matchExpressions", []) if isinstance(term, dict) else None
    if not isinstance(expressions, list):
        return term
    return {**term, "matchExpressions": [*expressions, *gpu_expressions]}
