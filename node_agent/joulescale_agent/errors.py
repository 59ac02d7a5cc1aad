"""The agent's own exceptions: every library error (NVML, HTTP, parsing) is mapped to one of these
at a single boundary, so the control loop reasons about a handful of cases only."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class GpuError(AgentError):
    """A GPU operation failed."""


class GpuPermissionError(GpuError):
    """The agent may read but not change clocks (no root / CAP_SYS_ADMIN): run read-only."""


class GpuNotSupportedError(GpuError):
    """The device or driver does not support the operation (e.g. clock locking on this GPU)."""


class GpuMigError(GpuNotSupportedError):
    """The GPU is MIG-partitioned: clock locking is refused there, by NVML and by the agent."""


class GpuNotFoundError(GpuError):
    """No GPU with that identifier on this node."""


class GpuUnavailableError(GpuError):
    """The GPU library or driver is missing or uninitialised, or the GPU fell off the bus."""


class GpuLostError(GpuUnavailableError):
    """The GPU fell off the bus (NVML GpuIsLost): nothing can be reset there; the driver resets
    its clocks when it comes back."""


class StateFileLockedError(AgentError):
    """Another agent holds the node's state file: two agents would reset each other's locks."""


class MetricsError(AgentError):
    """An engine's metrics could not be turned into an observation."""


class MetricsUnavailableError(MetricsError):
    """The metrics endpoint refused, timed out or answered with an HTTP error."""


class MetricsFormatError(MetricsError):
    """The page is not a usable Prometheus text exposition (HTML, truncated, NaN, missing families)."""


class MetricsLimitError(MetricsFormatError):
    """The page, a line or a label is over the parse limits, or parsing it is over its time budget."""


class HookMessageError(AgentError):
    """A datagram on an engine's hook socket that is not a sane message (the engine is untrusted)."""
