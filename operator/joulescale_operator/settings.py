"""The operator's own settings: one typed group, each field with its unit and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from joulescale_operator.enginehook import DEFAULT_HOOK_SETTINGS, HookSettings
from joulescale_operator.identity import MANAGER


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    kubeconfig: Path | None = None
    """A kubeconfig file; None means in-cluster config, then the usual kubeconfig lookup."""

    namespaces: tuple[str, ...] = field(default_factory=tuple)
    """Namespaces (or kopf glob patterns) to watch; empty means cluster-wide."""

    resync_interval_s: float = 30.0
    """Seconds between two drift corrections of a service; also how fresh replica counts are."""

    retry_delay_s: float = 5.0
    """Seconds before a reconcile is retried after a conflict or an outage."""

    max_workers: int = 16
    """Threads for the synchronous handlers: how many services reconcile at the same time."""

    field_manager: str = MANAGER
    """The server-side apply field manager of every child."""

    liveness_endpoint: str | None = "http://0.0.0.0:8080/healthz"
    """Where kopf serves its liveness probe; None disables it."""

    profiles_dir: Path | None = None
    """A directory of extra profile files (the chart's profiles ConfigMap), read at start; with
    the shipped profiles it decides the DVFSActive condition, as the agents' own copy decides
    which pods they control."""

    hook: HookSettings = DEFAULT_HOOK_SETTINGS
    """The engine hook's node directory (the agents mount the same) and the image of its package."""
