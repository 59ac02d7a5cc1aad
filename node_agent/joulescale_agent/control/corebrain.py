"""The production brain: the core's policy behind the core's ClockGovernor (its actuation rules are in docs/policies.md)."""

from __future__ import annotations

from joulescale.control import ClockGovernor, PolicyContext, make_policy
from joulescale.control.observation import Observation
from joulescale.control.policy import ClockPolicy, DecisionReason
from joulescale.profiles import ProfileCatalog, shipped_catalog
from joulescale_agent.control.instance import EngineInstance, InstancePolicy

OFF = "off"


class CoreBrain:
    def __init__(self, policy: ClockPolicy, governor: ClockGovernor) -> None:
        self._policy = policy
        self._governor = governor

    def decide(self, observation: Observation) -> tuple[DecisionReason, int | None]:
        decision = self._policy.decide(observation)
        actuation = self._governor.apply(decision, observation.now_s, observation.sm_clock_mhz)
        return actuation.reason, actuation.sm_clock_mhz if actuation.changed else None

    def reset(self) -> None:
        self._governor.reset()


class CoreBrainFactory:
    """Builds policies with ``make_policy``; ``static`` runs at the planned base clock. Profiles
    are looked up by name in ``profiles`` (the shipped ones plus the user's)."""

    def __init__(self, min_hold_s: float | None = None, profiles: ProfileCatalog | None = None) -> None:
        self._min_hold_s = min_hold_s
        self._profiles = profiles if profiles is not None else shipped_catalog()

    def build(
        self, instance: EngineInstance, policy: InstancePolicy, supported_mhz: tuple[int, ...]
    ) -> CoreBrain | None:
        if policy.policy == OFF:
            return None
        context = PolicyContext(
            profile=self._profiles.get(policy.profile),
            slo=policy.slo,
            bounds=policy.bounds,
            static_clock_mhz=policy.base_clock_mhz,
        )
        governor = (
            ClockGovernor(supported_mhz, policy.bounds)
            if self._min_hold_s is None
            else ClockGovernor(supported_mhz, policy.bounds, min_hold_s=self._min_hold_s)
        )
        return CoreBrain(make_policy(policy.policy, context), governor)
