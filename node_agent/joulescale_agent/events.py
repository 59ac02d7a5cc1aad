"""The seam through which the agent tells a pod's owner what it does not do with the pod.

Discovery reports pods it refuses to control, the supervisor instances whose clock policy
cannot be built. In a cluster both go to one Kubernetes event writer
(``joulescale_agent.kube_events``); with static discovery there is nobody to tell but the log,
so the recorder does nothing. Reasons are the constants below, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

NOT_CONTROLLED = "JouleScaleNotControlled"
"""Discovery refused the pod (not created by its service, a GPU conflict, no profile...)."""
CLOCK_POLICY_ERROR = "ClockPolicyError"
"""The pod's service asks for a policy that cannot be built; its GPUs stay at default clocks."""
REASONS = (NOT_CONTROLLED, CLOCK_POLICY_ERROR)


@dataclass(frozen=True, slots=True)
class PodRef:
    """The pod an Event is about. ``uid`` (when known) ties the Event to this incarnation of
    the pod, not to a later one of the same name."""

    namespace: str
    name: str
    uid: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class EventRecorder(Protocol):
    def warn(self, pod: PodRef, reason: str, message: str) -> None:
        """Report a Warning about ``pod``; must not block and must not raise."""
        ...

    def close(self) -> None:
        """Post what is pending within a short time, then stop; never raises."""
        ...


class NullEventRecorder:
    def warn(self, pod: PodRef, reason: str, message: str) -> None:
        return None

    def close(self) -> None:
        return None
