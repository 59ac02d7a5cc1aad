"""The one factory of a controller (policy + governor) for one engine instance.

The node agent and the twin both call ``build_controller``, so that the policy and the
actuation rules a cluster runs are the ones the twin measured, with the same settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.aggregated import AggregatedPolicy
from joulescale.control.context import PolicyContext
from joulescale.control.governor import ClockGovernor
from joulescale.control.mixed_step import MixedStepPredictor
from joulescale.control.policy import ClockBounds, ClockPolicy, Slo
from joulescale.control.registry import make_policy, policy_entry
from joulescale.control.settings import PolicySettings
from joulescale.profiles import GpuProfile

Role = Literal["prefill", "decode", "aggregated"]
"""What an instance runs: one phase (P/D), or both in each step (aggregated). The API's roles are
prefill and decode only, so an aggregated controller runs in the twin; the agent would build it
the same way (``role="aggregated"``) once an engine pod can be aggregated."""


@dataclass(frozen=True, slots=True)
class Controller:
    """The decision side of one instance; ``observes``: the policy reads observations."""

    policy: ClockPolicy
    governor: ClockGovernor
    observes: bool


def build_controller(
    policy: str,
    profile: GpuProfile,
    slo: Slo,
    *,
    settings: PolicySettings | None = None,
    bounds: ClockBounds | None = None,
    base_clock_mhz: int | None = None,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    supported_mhz: Sequence[int] | None = None,
    role: Role = "prefill",
) -> Controller:
    """Policy ``policy`` (a registry name) and its governor for one instance.

    ``settings``: spec.energy's tunables; ``base_clock_mhz``: the static clock (None: the top
    allowed clock); ``token_budget``: spec.engine.maxBatchedTokens; ``supported_mhz``: the
    device's clocks when known (the agent reads them), else the profile's. ``role``: a phase's
    instance gets the policy itself (it serves either phase); an aggregated instance gets
    ``AggregatedPolicy``, one controller per phase and the stricter decision.
    """
    settings = settings if settings is not None else PolicySettings()
    context = PolicyContext(profile=profile, slo=slo, bounds=bounds, static_clock_mhz=base_clock_mhz,
                            token_budget=token_budget, settings=settings)
    clocks = tuple(supported_mhz) if supported_mhz is not None else profile.supported_sm_clocks_mhz
    governor = ClockGovernor(clocks, bounds, min_hold_s=settings.governor.min_hold_s)
    built: ClockPolicy = make_policy(policy, context)
    if role == "aggregated":
        # The prefill side predicts its steps as the mixed steps they are (joulescale/control/mixed_step.py).
        mixed = MixedStepPredictor(profile)
        built = AggregatedPolicy(make_policy(policy, replace(context, predictor=mixed)), built, mixed)
    return Controller(built, governor, policy_entry(policy).observes)
