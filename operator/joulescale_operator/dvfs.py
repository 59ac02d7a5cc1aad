"""The DVFSActive condition: will the node agents have a profile for this service's pods?

The agents are read-only on services, so the operator says it, from what the core owns: a
profile exists for (model, TP size, GPU product) by the same exact rule the agent's chooser
uses (``ProfileCatalog.match``), for each role and each GPU product the role may run on. A pod
without one runs with no clock control; the condition and a Warning event make that visible
on the service instead of only in an agent's log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from joulescale.api import EnergyAwareLLMServiceSpec
from joulescale.profiles import ProfileCatalog
from joulescale_operator import reasons
from joulescale_operator.conditions import condition, find, set_condition

OFF = "off"


def missing_profiles(spec: EnergyAwareLLMServiceSpec, profiles: ProfileCatalog) -> list[str]:
    """One entry per (role, GPU product) with no profile, e.g. ``prefill: TP2 on NVIDIA-H100-80GB-HBM3``."""
    missing = []
    for role, role_spec in (("prefill", spec.prefill), ("decode", spec.decode)):
        for product in role_spec.gpu.products:
            if profiles.match(product, spec.model.name, role_spec.tensor_parallel_size) is None:
                missing.append(f"{role}: TP{role_spec.tensor_parallel_size} on {product}")
    return missing


def dvfs_condition(
    spec: EnergyAwareLLMServiceSpec, profiles: ProfileCatalog, generation: int, now: datetime
) -> dict[str, Any]:
    if spec.energy.policy == OFF:
        return condition(reasons.DVFS_ACTIVE, "False", reasons.POLICY_OFF,
                         "energy.policy is off: the agents leave the clocks alone.", generation, now)
    missing = missing_profiles(spec, profiles)
    if missing:
        message = (f"No profile for model {spec.model.name} ({'; '.join(missing)}): those pods run "
                   "without clock control. Install a profile for them (docs/profiles.md).")
        return condition(reasons.DVFS_ACTIVE, "False", reasons.NO_PROFILE, message, generation, now)
    return condition(reasons.DVFS_ACTIVE, "True", reasons.PROFILES_FOUND,
                     "Every role has a profile for each of its GPU products: the agents control the clocks.",
                     generation, now)


def with_dvfs_condition(
    previous: dict[str, Any], desired: dict[str, Any], new: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """``desired`` with the DVFSActive condition set, and the Warning event's message when the
    condition now says NoProfile and did not say exactly that before (None: no event)."""
    before = find(list(previous.get("conditions", [])), reasons.DVFS_ACTIVE)
    turned = new["reason"] == reasons.NO_PROFILE and (
        before is None or any(before.get(k) != new[k] for k in ("status", "reason", "message"))
    )
    conditions = set_condition(list(desired.get("conditions", [])), new)
    return {**desired, "conditions": conditions}, new["message"] if turned else None
