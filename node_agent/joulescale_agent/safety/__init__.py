"""The safety contract: the state file of locked GPUs and the actuator that keeps it true."""

from joulescale_agent.safety.actuator import ClockActuator
from joulescale_agent.safety.statefile import StateFile

__all__ = ["ClockActuator", "StateFile"]
