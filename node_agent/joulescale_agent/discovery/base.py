"""The discovery plug-in point."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from joulescale_agent.control.instance import EngineInstance, InstancePolicy

Desired = Mapping[str, tuple[EngineInstance, InstancePolicy]]
"""Every instance the agent should control now, by ``namespace/pod``."""


class Discovery(Protocol):
    def updates(self) -> AsyncIterator[Desired]:
        """Yields the whole desired set at start and again after every change."""
        ...
