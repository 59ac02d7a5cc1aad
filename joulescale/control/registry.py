"""The policy registry: the one list of clock policies, read by everything that names them.

Per policy: its name (spec.energy.policy), the core class, the settings group it reads besides
the shared ones, the twin's variants of it (static runs as static-max and static-best), the
decode router the twin pairs it with, and whether it is online (reacts to observations). The
API's enum, the CRD, the twin's policy list and reports, and the agent's controllers all come
from here; a new policy is one ``register`` call (docs/dev/EXTENDING.md, "A new policy").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from joulescale.control.biscale import BiScalePolicy
from joulescale.control.context import PolicyContext
from joulescale.control.joulescale_policy import JouleScalePolicy
from joulescale.control.policy import ClockPolicy
from joulescale.control.settings import PolicySettings
from joulescale.control.static import StaticPolicy
from joulescale.control.voltana import VoltanaPolicy

OFF = "off"
"""spec.energy.policy that leaves the clocks alone: the agent builds no controller."""

VariantRole = Literal["reference", "baseline", "online"]
"""reference: the twin's capacity and SLO yardstick (static-max); baseline: an offline choice
(static-best); online: a policy that reacts to observations."""


@dataclass(frozen=True, slots=True)
class TwinVariant:
    """One name the twin compares; ``swept_clocks``: the twin chooses its per-phase clocks."""

    name: str
    role: VariantRole
    swept_clocks: bool = False


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    name: str
    build: Callable[[PolicyContext], ClockPolicy]
    summary: str
    """One line for the API's description and the docs."""
    settings_group: str | None = None
    """The PolicySettings attribute holding this policy's own tunables (None: shared ones only)."""
    decode_router: str | None = None
    """The twin's decode router for it (e.g. "ecoroute"); None: the cluster's (capacity-weighted)."""
    variants: tuple[TwinVariant, ...] = ()
    """The twin's names for it; empty: one online variant under the policy's own name."""

    @property
    def observes(self) -> bool:
        """Whether the policy reads observations (the twin skips feeding the ones that do not)."""
        return any(v.role == "online" for v in self.twin_variants)

    @property
    def twin_variants(self) -> tuple[TwinVariant, ...]:
        return self.variants or (TwinVariant(self.name, "online"),)


class UnknownPolicyError(ValueError):
    """No policy of that name."""


_ENTRIES: dict[str, PolicyEntry] = {}


def register(entry: PolicyEntry) -> PolicyEntry:
    """Add a policy; its name and its twin variants must be new."""
    taken = {OFF, *_ENTRIES, *(v.name for e in _ENTRIES.values() for v in e.twin_variants)}
    clashes = {entry.name, *(v.name for v in entry.twin_variants)} & taken
    if clashes:
        raise ValueError(f"policy name already taken: {', '.join(sorted(clashes))}")
    if entry.settings_group is not None and entry.settings_group not in PolicySettings.__dataclass_fields__:
        raise ValueError(f"{entry.name}: no settings group {entry.settings_group!r} in PolicySettings")
    _ENTRIES[entry.name] = entry
    return entry


@contextmanager
def registered(entry: PolicyEntry) -> Iterator[PolicyEntry]:
    """``entry`` registered for the block only (tests, experiments)."""
    register(entry)
    try:
        yield entry
    finally:
        del _ENTRIES[entry.name]


def policy_entries() -> tuple[PolicyEntry, ...]:
    return tuple(_ENTRIES.values())


def policy_names() -> tuple[str, ...]:
    """The policies spec.energy.policy may name, besides ``off``."""
    return tuple(_ENTRIES)


def policy_entry(name: str) -> PolicyEntry:
    try:
        return _ENTRIES[name]
    except KeyError:
        raise UnknownPolicyError(f"unknown policy {name!r}; known: {', '.join(_ENTRIES)}") from None


def twin_variants() -> tuple[tuple[TwinVariant, PolicyEntry], ...]:
    """Every name the twin compares, in registry order, with the policy it runs."""
    return tuple((v, e) for e in _ENTRIES.values() for v in e.twin_variants)


def twin_variant(name: str) -> tuple[TwinVariant, PolicyEntry]:
    for variant, entry in twin_variants():
        if variant.name == name:
            return variant, entry
    known = ", ".join(v.name for v, _ in twin_variants())
    raise UnknownPolicyError(f"unknown policy {name!r}; known: {known}")


def reference_variant() -> str:
    """The twin's yardstick (static-max): capacity is found and SLO holding judged against it."""
    return next(v.name for v, _ in twin_variants() if v.role == "reference")


def make_policy(name: str, context: PolicyContext) -> ClockPolicy:
    """A new policy object for one engine instance (policies keep per-instance state)."""
    return policy_entry(name).build(context)


register(PolicyEntry(
    "static", StaticPolicy, "a fixed clock: the planned base clock, or the top allowed clock",
    variants=(TwinVariant("static-max", "reference"), TwinVariant("static-best", "baseline", swept_clocks=True)),
))
register(PolicyEntry(
    "voltana", VoltanaPolicy, "VoltanaLLM's EcoFreq: the lowest clock of a short list that fits the SLO",
    settings_group="voltana", decode_router="ecoroute",
))
register(PolicyEntry(
    "biscale", BiScalePolicy, "BiScale: prefill MPC and per-iteration decode clocks from the offline model",
    settings_group="biscale",
))
register(PolicyEntry(
    "joulescale", JouleScalePolicy, "JouleScale: energy-aware prefill MPC and slack-banking decode, online-corrected",
    settings_group="joulescale",
))
