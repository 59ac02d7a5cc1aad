"""The compared policies, built from the real control code by the agent's factory.

The twin never re-implements a policy: each name is a variant of a registered policy
(``joulescale.control.registry``), built with ``build_controller`` exactly as the agent builds
it. The registry also fixes the decode router (voltana routes decode with EcoRoute); every
policy routes prefill capacity-weighted, so the comparison isolates the clock policy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from joulescale.control import ClockGovernor, PolicySettings, build_controller
from joulescale.control.controller import Role
from joulescale.control.policy import ClockBounds, ClockDecision, Slo
from joulescale.control.registry import twin_variant, twin_variants
from joulescale.engines.observation import Phase
from joulescale.twin.cluster import ClusterConfig, ControlFactory, InstanceControl


def policy_names() -> tuple[str, ...]:
    """Every name ``twin compare`` accepts besides the oracle, in registry order."""
    return tuple(v.name for v, _ in twin_variants())


class GovernorActuator:
    """Adapts the agent's ``ClockGovernor`` to the twin's actuator seam."""

    __slots__ = ("_governor",)

    def __init__(self, governor: ClockGovernor) -> None:
        self._governor = governor

    def target_mhz(self, decision: ClockDecision, now_s: float, current_mhz: int) -> int | None:
        actuation = self._governor.apply(decision, now_s, current_mhz)
        return actuation.sm_clock_mhz if actuation.changed else None


@dataclass(frozen=True, slots=True)
class RunSetup:
    cluster: ClusterConfig
    control: ControlFactory


def policy_run_setup(name: str, cluster: ClusterConfig, slo: Slo, bounds: ClockBounds | None,
                     static_mhz: dict[Phase, int] | None = None,
                     settings: PolicySettings | None = None) -> RunSetup:
    """The cluster (with the policy's routers) and the per-instance control for policy ``name``.

    ``static_mhz`` gives a swept variant (static-best) its per-phase clocks (an aggregated
    instance runs the higher of the two); static-max runs the top allowed clock. ``settings``: the service's tunables (spec.energy), default as shipped.
    """
    variant, entry = twin_variant(name)
    if variant.swept_clocks and static_mhz is None:
        raise ValueError(f"{name} needs its per-phase clocks")

    def control(role: Role, index: int) -> InstanceControl:
        base_mhz = None
        if static_mhz is not None and variant.swept_clocks:
            base_mhz = max(static_mhz.values()) if role == "aggregated" else static_mhz[role]
        controller = build_controller(
            entry.name, cluster.profile_of("decode" if role == "aggregated" else role), slo, settings=settings,
            bounds=bounds, base_clock_mhz=base_mhz, token_budget=cluster.prefill_token_budget, role=role)
        return InstanceControl(controller.policy, GovernorActuator(controller.governor), observes=controller.observes)

    routed = cluster if entry.decode_router is None else replace(cluster, decode_router=entry.decode_router)
    return RunSetup(routed, control)
