"""The engine hook in an engine pod (pure): the flag or variable that loads it, the socket's
hostPath directory shared with the agent's DaemonSet, and the package copied in from its image.

Each pod sees only its own subdirectory of the host directory (``subPathExpr`` on the pod's UID):
``<host dir>/<pod uid>/hook.sock`` on the node, ``/run/joulescale/hook/hook.sock`` in the engine
container. The agent binds that socket for each engine pod it controls and maps the directory's
name to the pod; a tenant can reach no other pod's socket. The pod UID comes from the downward API
and no user may set it (the JOULESCALE_ variables are reserved, and podguard checks the result).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from joulescale.api import EnergyAwareLLMServiceSpec

HOOK_VOLUME = "joulescale-hook"
PACKAGE_VOLUME = "joulescale-hook-package"
CONTAINER_HOOK_DIR = "/run/joulescale/hook"
SOCKET_NAME = "hook.sock"
PACKAGE_PATH = "/opt/joulescale-hook"
INIT_CONTAINER = "joulescale-hook"
POD_UID_ENV = "JOULESCALE_POD_UID"
SOCKET_ENV = "JOULESCALE_HOOK_SOCKET"
BASE_SCHEDULER_ENV = "JOULESCALE_HOOK_BASE_SCHEDULER"
VLLM_SCHEDULER_CLS = "joulescale_hook.vllm_scheduler.JouleScaleScheduler"
SGLANG_PLUGIN = "joulescale_hook"
"""The plugin's entry-point name in the group sglang.srt.plugins (engine_hook/pyproject.toml)."""
HOOK_REPOSITORY = "ghcr.io/joulescale/joulescale-engine-hook"
"""The hook package on busybox (engine_hook/Dockerfile), released with the operator."""
DEFAULT_HOST_DIR = "/run/joulescale/hook"
"""The node directory; the chart's agent.hookHostDir, given to the operator and the agents."""
POD_UID_MOUNT = f"$({POD_UID_ENV})"


@dataclass(frozen=True, slots=True)
class HookSettings:
    """The operator's side of the hook: where on the node, and which image carries the package."""

    host_dir: str = DEFAULT_HOST_DIR
    image: str | None = None
    """None: the hook image of the operator's own version."""

    def package_image(self) -> str:
        return self.image or f"{HOOK_REPOSITORY}:{metadata.version('joulescale')}"


DEFAULT_HOOK_SETTINGS = HookSettings()


@dataclass(frozen=True, slots=True)
class HookRender:
    """What the hook adds to the engine pod besides its command line (hook_args)."""

    env: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)


def hook_volume(settings: HookSettings) -> dict[str, Any]:
    return {"name": HOOK_VOLUME, "hostPath": {"path": settings.host_dir, "type": "DirectoryOrCreate"}}


HOOK_MOUNT: dict[str, Any] = {"name": HOOK_VOLUME, "mountPath": CONTAINER_HOOK_DIR, "subPathExpr": POD_UID_MOUNT}
POD_UID_VAR: dict[str, Any] = {"name": POD_UID_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}


def hook_args(spec: EnergyAwareLLMServiceSpec) -> list[str]:
    """The engine flags that load the hook: vLLM's scheduler class; SGLang needs none."""
    if spec.engine.name == "vllm" and spec.engine.hook_enabled():
        return ["--scheduler-cls", VLLM_SCHEDULER_CLS]
    return []


def engine_hook(spec: EnergyAwareLLMServiceSpec, settings: HookSettings) -> HookRender:
    """What the hook adds to an engine pod; nothing when it is off for this engine and image."""
    engine = spec.engine
    if not engine.hook_enabled():
        return HookRender()
    env: list[dict[str, Any]] = [
        POD_UID_VAR,
        {"name": SOCKET_ENV, "value": f"{CONTAINER_HOOK_DIR}/{SOCKET_NAME}"},
    ]
    if engine.name == "vllm":
        if engine.hook.base_scheduler:
            env.append({"name": BASE_SCHEDULER_ENV, "value": engine.hook.base_scheduler})
    else:
        env.append({"name": "SGLANG_PLUGINS", "value": SGLANG_PLUGIN})
    volumes = [hook_volume(settings)]
    mounts = [dict(HOOK_MOUNT)]
    init: list[dict[str, Any]] = []
    if engine.hook.inject:
        env.append({"name": "PYTHONPATH", "value": PACKAGE_PATH})
        volumes.append({"name": PACKAGE_VOLUME, "emptyDir": {}})
        mounts.append({"name": PACKAGE_VOLUME, "mountPath": PACKAGE_PATH, "readOnly": True})
        init.append({
            "name": INIT_CONTAINER,
            "image": settings.package_image(),
            "command": ["cp", "-R", "/hook/.", PACKAGE_PATH],
            "volumeMounts": [{"name": PACKAGE_VOLUME, "mountPath": PACKAGE_PATH}],
            "resources": {"limits": {"cpu": "100m", "memory": "64Mi"},
                          "requests": {"cpu": "10m", "memory": "16Mi"}},
        })
    return HookRender(env=env, volumes=volumes, mounts=mounts, init_containers=init)
