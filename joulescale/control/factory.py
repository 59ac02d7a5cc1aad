"""Policies by name: the one place that maps spec.energy.policy to an implementation."""

from __future__ import annotations

from collections.abc import Callable

from joulescale.control.biscale import BiScalePolicy
from joulescale.control.context import PolicyContext
from joulescale.control.joulescale_policy import JouleScalePolicy
from joulescale.control.policy import ClockPolicy
from joulescale.control.static import StaticPolicy
from joulescale.control.voltana import VoltanaPolicy

_POLICIES: dict[str, Callable[[PolicyContext], ClockPolicy]] = {
    "static": StaticPolicy,
    "voltana": VoltanaPolicy,
    "biscale": BiScalePolicy,
    "joulescale": JouleScalePolicy,
}

POLICY_NAMES: tuple[str, ...] = tuple(_POLICIES)


class UnknownPolicyError(ValueError):
    """No policy of that name."""


def make_policy(name: str, context: PolicyContext) -> ClockPolicy:
    """A new policy object for one engine instance (policies keep per-instance state)."""
    try:
        factory = _POLICIES[name]
    except KeyError:
        raise UnknownPolicyError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}") from None
    return factory(context)
