"""The last check before a pod template is written: no host access, whatever the input (pure).

The schema and the typed model already refuse every such field. This check looks at the merged
template instead of the input, so that a bug in the merge, an object stored before the CRD
refused a field, or a spec that bypassed the apiserver still never reaches a Deployment.
"""

from __future__ import annotations

from typing import Any

from joulescale.api import ENGINE_CONTAINER, is_gpu_resource
from joulescale.api.engine import GPU_RUNTIME_ENV_PREFIX
from joulescale.api.volumes import SAFE_SOURCES
from joulescale_operator.enginehook import HOOK_VOLUME, POD_UID_ENV, POD_UID_VAR

SIDECAR_GPU_ENV: dict[str, str] = {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}
"""The NVIDIA container runtime's "no GPU": the operator sets it last on every sidecar."""

POD_SPEC_KEYS = frozenset(
    {
        "containers",
        "affinity",
        "tolerations",
        "nodeSelector",
        "volumes",
        "priorityClassName",
        "imagePullSecrets",
        "initContainers",
    }
)
"""Every key a rendered engine pod spec may hold: what the operator writes and the allowlist adds."""

POD_METADATA_KEYS = frozenset({"labels", "annotations"})

ENGINE_OWNED = ("image", "command", "args", "ports", "readinessProbe", "startupProbe")

CONTAINER_KEYS = frozenset(
    {
        "name",
        "image",
        "imagePullPolicy",
        "command",
        "args",
        "workingDir",
        "env",
        "envFrom",
        "ports",
        "resources",
        "volumeMounts",
        "securityContext",
        "readinessProbe",
        "startupProbe",
    }
)
"""Every key a rendered container may hold (the probes only as the operator wrote them)."""

SECURITY_KEYS = frozenset(
    {
        "privileged",
        "allowPrivilegeEscalation",
        "capabilities",
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "seccompProfile",
    }
)


class ForbiddenPodTemplate(ValueError):
    """The merged pod template would give a pod more than the allowlist; nothing is written."""


def host_access_problems(rendered: dict[str, Any], merged: dict[str, Any]) -> list[str]:
    """The paths in `merged` (from the pod template) that go beyond the operator's `rendered`
    template plus the allowlist."""
    problems = [f"metadata.{key}" for key in sorted(set(merged.get("metadata", {})) - POD_METADATA_KEYS)]
    pod = merged.get("spec", {})
    problems += [f"spec.{key}" for key in sorted(set(pod) - POD_SPEC_KEYS)]
    rendered_pod = rendered.get("spec", {})
    if pod.get("initContainers", []) != rendered_pod.get("initContainers", []):
        problems.append("spec.initContainers: only the operator's")
    rendered_volumes = {v["name"]: v for v in rendered_pod.get("volumes", [])}
    problems += [_volume_problem(volume, rendered_volumes) for volume in pod.get("volumes", [])]
    engine = _engine(rendered)
    problems += _hook_problems(pod, engine)
    for container in pod.get("containers", []):
        if not isinstance(container, dict):
            problems.append("spec.containers: not an object")
            continue
        problems += _container_problems(
            container, engine if container.get("name") == ENGINE_CONTAINER else None
        )
    return [problem for problem in problems if problem]


def _engine(template: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in template["spec"]["containers"] if c["name"] == ENGINE_CONTAINER)


def _volume_problem(volume: Any, rendered: dict[str, Any]) -> str:
    if not isinstance(volume, dict):
        return "spec.volumes: not an object"
    if volume.get("name") == HOOK_VOLUME and volume == rendered.get(HOOK_VOLUME):
        return ""  # the engine hook's hostPath directory, exactly as the operator wrote it
    sources = set(volume) - {"name"}
    if len(sources) != 1 or not sources <= set(SAFE_SOURCES):
        return f"spec.volumes[{volume.get('name')}]: {', '.join(sorted(sources)) or 'no source'}"
    return ""


def _hook_problems(pod: dict[str, Any], engine: dict[str, Any]) -> list[str]:
    """The hook's hostPath directory holds every pod's socket: it is mounted only in the engine
    container, only as the operator wrote it (the pod's own subdirectory), and the pod UID that
    names the subdirectory is the downward API's."""
    rendered_mounts = [m for m in engine.get("volumeMounts", []) if m.get("name") == HOOK_VOLUME]
    expected_uid = [POD_UID_VAR] if rendered_mounts else []
    problems = []
    for kind in ("containers", "initContainers"):
        for container in pod.get(kind, []):
            if not isinstance(container, dict):
                continue
            is_engine = kind == "containers" and container.get("name") == ENGINE_CONTAINER
            mounts = [m for m in container.get("volumeMounts", []) if isinstance(m, dict) and m.get("name") == HOOK_VOLUME]
            if mounts != (rendered_mounts if is_engine else []):
                problems.append(f"spec.{kind}[{container.get('name')}].volumeMounts[{HOOK_VOLUME}]")
            uid = [e for e in container.get("env", []) if isinstance(e, dict) and e.get("name") == POD_UID_ENV]
            if uid != (expected_uid if is_engine else []):
                problems.append(f"spec.{kind}[{container.get('name')}].env[{POD_UID_ENV}]")
    return problems


def _container_problems(container: dict[str, Any], engine: dict[str, Any] | None) -> list[str]:
    where = f"spec.containers[{container.get('name')}]"
    problems = [f"{where}.{key}" for key in sorted(set(container) - CONTAINER_KEYS)]
    owned = ENGINE_OWNED if engine is not None else ("readinessProbe", "startupProbe")
    problems += [f"{where}.{key}" for key in owned if container.get(key) != (engine or {}).get(key)]
    security = container.get("securityContext") or {}
    if security.get("privileged") or security.get("allowPrivilegeEscalation"):
        problems.append(f"{where}.securityContext: privileges")
    if (security.get("capabilities") or {}).get("add"):
        problems.append(f"{where}.securityContext.capabilities.add")
    if (security.get("seccompProfile") or {}).get("type") == "Unconfined":
        problems.append(f"{where}.securityContext.seccompProfile: Unconfined")
    problems += [f"{where}.securityContext.{key}" for key in sorted(set(security) - SECURITY_KEYS)]
    for port in container.get("ports", []):
        if "hostPort" in port or "hostIP" in port:
            problems.append(f"{where}.ports: hostPort")
    for mount in container.get("volumeMounts", []):
        if "mountPropagation" in mount:
            problems.append(f"{where}.volumeMounts.mountPropagation")
    gpu_env = [
        e for e in container.get("env", []) if str(e.get("name", "")).startswith(GPU_RUNTIME_ENV_PREFIX)
    ]
    allowed_env = [] if engine is not None else [SIDECAR_GPU_ENV]
    if gpu_env != allowed_env:
        problems.append(f"{where}.env: {GPU_RUNTIME_ENV_PREFIX}* variables")
    resources = container.get("resources") or {}
    for kind in ("limits", "requests"):
        gpus = {k: v for k, v in (resources.get(kind) or {}).items() if is_gpu_resource(k)}
        expected = {
            k: v
            for k, v in ((engine or {}).get("resources", {}).get(kind) or {}).items()
            if is_gpu_resource(k)
        }
        if gpus != expected:
            problems.append(f"{where}.resources.{kind}: GPU resources")
    return problems
