"""The seam through which the agent tells a pod's owner why its clocks are not controlled.

In a cluster this is a Kubernetes Event on the pod (``joulescale_agent.kube_events``); with
static discovery there is nobody to tell but the log, so the recorder does nothing.
"""

from __future__ import annotations

from typing import Protocol

from joulescale_agent.control.instance import EngineInstance


class EventRecorder(Protocol):
    def warn(self, instance: EngineInstance, reason: str, message: str) -> None:
        """Report a Warning about ``instance``; must not block and must not raise."""
        ...


class NullEventRecorder:
    def warn(self, instance: EngineInstance, reason: str, message: str) -> None:
        return None
