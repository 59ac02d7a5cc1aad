"""Builds the decision side of one instance (policy + governor) from its InstancePolicy.

This is the seam between the agent and the core: production uses the core's ``make_policy`` and
``ClockGovernor``; tests inject a factory of scripted brains.
"""

from __future__ import annotations

from typing import Protocol

from joulescale.control.policy import DecisionReason
from joulescale.engines.observation import Observation
from joulescale_agent.control.instance import EngineInstance, InstancePolicy


class Brain(Protocol):
    """Decides the clock of one instance: the policy's choice after the actuation rules."""

    def decide(self, observation: Observation) -> tuple[DecisionReason, int | None]:
        """Why, and the clock to apply now (None: keep the current one)."""
        ...

    def reset(self) -> None:
        """The group's clocks were reset to the device default (fail-safe, policy off)."""
        ...


class BrainFactory(Protocol):
    def build(
        self, instance: EngineInstance, policy: InstancePolicy, supported_mhz: tuple[int, ...]
    ) -> Brain | None:
        """None when the policy is ``off``: the agent leaves the instance's clocks alone."""
        ...
