"""The JouleScale node agent: per-iteration SM clock control of the engine pods of one GPU node.

See docs/agent.md. The public surface is what the CLI, the tests and e2e support code use.
"""

from joulescale_agent.agent import Agent
from joulescale_agent.control import EngineInstance, InstanceLoop, InstancePolicy, LoopSettings, Supervisor
from joulescale_agent.errors import (
    AgentError,
    GpuError,
    GpuMigError,
    GpuNotFoundError,
    GpuNotSupportedError,
    GpuPermissionError,
    GpuUnavailableError,
    MetricsError,
    MetricsFormatError,
    MetricsUnavailableError,
)
from joulescale_agent.gpu import GpuBackend, GpuInfo, ThrottleReason

__all__ = [
    "Agent",
    "AgentError",
    "EngineInstance",
    "GpuBackend",
    "GpuError",
    "GpuInfo",
    "GpuMigError",
    "GpuNotFoundError",
    "GpuNotSupportedError",
    "GpuPermissionError",
    "GpuUnavailableError",
    "InstanceLoop",
    "InstancePolicy",
    "LoopSettings",
    "MetricsError",
    "MetricsFormatError",
    "MetricsUnavailableError",
    "Supervisor",
    "ThrottleReason",
]
