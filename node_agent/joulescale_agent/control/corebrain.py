"""The production brain: the core's policy behind the core's ClockGovernor (its actuation rules are in docs/policies.md)."""

from __future__ import annotations

from dataclasses import replace

from joulescale.control import OFF, ClockGovernor, GovernorSettings, build_controller
from joulescale.control.policy import ClockPolicy, DecisionReason
from joulescale.engines.observation import Observation
from joulescale.profiles import ProfileCatalog, shipped_catalog
from joulescale_agent.control.instance import EngineInstance, InstancePolicy


class CoreBrain:
    def __init__(self, policy: ClockPolicy, governor: ClockGovernor) -> None:
        self.policy = policy
        self.governor = governor

    def decide(self, observation: Observation) -> tuple[DecisionReason, int | None]:
        decision = self.policy.decide(observation)
        actuation = self.governor.apply(decision, observation.now_s, observation.sm_clock_mhz)
        return actuation.reason, actuation.sm_clock_mhz if actuation.changed else None

    def reset(self) -> None:
        self.governor.reset()


class CoreBrainFactory:
    """Builds each instance's controller with the core's ``build_controller`` (the twin's factory
    too), from the service's policy, settings and token budget. Profiles are looked up by name in
    ``profiles`` (the shipped ones plus the user's). ``min_hold_s`` overrides the service's
    governor hold on this node (the agent's --min-hold-s)."""

    def __init__(self, min_hold_s: float | None = None, profiles: ProfileCatalog | None = None) -> None:
        self._min_hold_s = min_hold_s
        self._profiles = profiles if profiles is not None else shipped_catalog()

    def build(
        self, instance: EngineInstance, policy: InstancePolicy, supported_mhz: tuple[int, ...]
    ) -> CoreBrain | None:
        if policy.policy == OFF:
            return None
        settings = policy.settings
        if self._min_hold_s is not None:
            settings = replace(settings, governor=GovernorSettings(min_hold_ms=self._min_hold_s * 1000.0))
        controller = build_controller(
            policy.policy,
            self._profiles.get(policy.profile),
            policy.slo,
            settings=settings,
            bounds=policy.bounds,
            base_clock_mhz=policy.base_clock_mhz,
            token_budget=policy.token_budget,
            supported_mhz=supported_mhz,
        )
        return CoreBrain(controller.policy, controller.governor)
