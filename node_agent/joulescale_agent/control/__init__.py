"""The control loop: one asyncio task per engine instance, and the supervisor that keeps the set
of tasks equal to the set of discovered instances."""

from joulescale_agent.control.instance import EngineInstance, InstancePolicy, LoopSettings
from joulescale_agent.control.loop import InstanceLoop
from joulescale_agent.control.supervisor import Supervisor

__all__ = ["EngineInstance", "InstanceLoop", "InstancePolicy", "LoopSettings", "Supervisor"]
