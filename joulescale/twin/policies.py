"""The compared policies, built from the real control code (``joulescale.control``).

The twin never re-implements a policy: each name maps to ``make_policy`` with a
``PolicyContext`` and the agent's ``ClockGovernor``. A name also fixes the routers: voltana
routes decode with EcoRoute; every policy routes prefill capacity-weighted, so
the comparison isolates the clock policy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from joulescale.control import ClockGovernor, PolicyContext, make_policy
from joulescale.control.observation import Phase
from joulescale.control.policy import ClockBounds, ClockDecision, Slo
from joulescale.twin.cluster import ClusterConfig, ControlFactory, InstanceControl

POLICY_NAMES: tuple[str, ...] = ("static-max", "static-best", "voltana", "biscale", "joulescale")
_CORE_NAME = {"static-max": "static", "static-best": "static", "voltana": "voltana", "biscale": "biscale",
              "joulescale": "joulescale"}


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
                     static_mhz: dict[Phase, int] | None = None) -> RunSetup:
    """The cluster (with the policy's routers) and the per-instance control for policy ``name``.

    ``static_mhz`` gives static-best its per-phase clocks; static-max runs the top allowed clock.
    """
    if name not in _CORE_NAME:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
    if name == "static-best" and static_mhz is None:
        raise ValueError("static-best needs its per-phase clocks")
    core_name = _CORE_NAME[name]

    def control(phase: Phase, index: int) -> InstanceControl:
        profile = cluster.profile_of(phase)
        context = PolicyContext(
            profile=profile, slo=slo, bounds=bounds,
            static_clock_mhz=static_mhz[phase] if static_mhz is not None and name == "static-best" else None,
            max_batch_tokens=cluster.prefill_token_budget,
        )
        governor = ClockGovernor(profile.supported_sm_clocks_mhz, bounds)
        return InstanceControl(make_policy(core_name, context), GovernorActuator(governor),
                               observes=core_name != "static")

    routed = replace(cluster, decode_router="ecoroute") if name == "voltana" else cluster
    return RunSetup(routed, control)
