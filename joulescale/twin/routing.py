"""Routers that pick the instance for a request: round robin, capacity-weighted, EcoRoute.

Routers see only what a real router sees: queue depth, running counts and current clocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from joulescale.twin.decode import DecodeInstance
from joulescale.twin.prefill import PrefillInstance

ROUTER_NAMES = ("capacity-weighted", "round-robin", "ecoroute")
_TILE = 128
"""Decode kernels tile the batch by 128 sequences (VoltanaLLM's EcoRoute assumption)."""


class PrefillRouter(Protocol):
    def pick_prefill(self, instances: Sequence[PrefillInstance], prompt_tokens: int) -> int: ...


class DecodeRouter(Protocol):
    def pick_decode(self, instances: Sequence[DecodeInstance]) -> int: ...


class RoundRobin:
    """Cycles through instances regardless of load (VoltanaLLM's prefill choice is random; this is
    its deterministic equivalent)."""

    def __init__(self) -> None:
        self._next = 0

    def _advance(self, count: int) -> int:
        choice = self._next % count
        self._next = choice + 1
        return choice

    def pick_prefill(self, instances: Sequence[PrefillInstance], prompt_tokens: int) -> int:
        return self._advance(len(instances))

    def pick_decode(self, instances: Sequence[DecodeInstance]) -> int:
        return self._advance(len(instances))


class CapacityWeighted:
    """Least load per unit of capacity (BiScale routes in proportion to r_max). Ties rotate in
    a fixed order, so idle instances share the work and runs stay deterministic. Instances of
    one profile have equal weights."""

    def __init__(self, weights: Sequence[float] | None = None) -> None:
        self._weights = tuple(weights) if weights is not None else None
        self._turn = 0

    def _weight(self, index: int) -> float:
        return self._weights[index] if self._weights is not None else 1.0

    def _least(self, loads: Sequence[float]) -> int:
        count = len(loads)
        start = self._turn % count
        best = start
        for k in range(1, count):
            i = (start + k) % count
            if loads[i] / self._weight(i) < loads[best] / self._weight(best):
                best = i
        self._turn = best + 1
        return best

    def pick_prefill(self, instances: Sequence[PrefillInstance], prompt_tokens: int) -> int:
        return self._least([inst.queued_tokens for inst in instances])

    def pick_decode(self, instances: Sequence[DecodeInstance]) -> int:
        return self._least([inst.load for inst in instances])


class EcoRoute:
    """VoltanaLLM's decode router (EcoRoute): lowest clock while no instance is past one tile,
    then fill tiles without crossing a multiple of 128."""

    def pick_decode(self, instances: Sequence[DecodeInstance]) -> int:
        loads = [inst.load for inst in instances]
        if all(load < _TILE for load in loads):
            return min(range(len(instances)), key=lambda i: (instances[i].gpu.target_mhz, loads[i], i))
        order = sorted(range(len(instances)), key=lambda i: (loads[i] // _TILE, -loads[i], i))
        for i in order:
            if loads[i] % _TILE != _TILE - 1:
                return i
        return min(range(len(instances)), key=lambda i: (loads[i], i))


class Routers:
    """The pair used by one run."""

    def __init__(self, prefill: str, decode: str) -> None:
        for name in (prefill, decode):
            if name not in ROUTER_NAMES:
                raise ValueError(f"unknown router {name!r}; known: {', '.join(ROUTER_NAMES)}")
        if prefill == "ecoroute":
            raise ValueError("ecoroute is a decode router")
        self._prefill: PrefillRouter = RoundRobin() if prefill == "round-robin" else CapacityWeighted()
        self._decode: DecodeRouter
        if decode == "round-robin":
            self._decode = RoundRobin()
        elif decode == "ecoroute":
            self._decode = EcoRoute()
        else:
            self._decode = CapacityWeighted()

    def prefill(self, instances: Sequence[PrefillInstance], prompt_tokens: int) -> int:
        return self._prefill.pick_prefill(instances, prompt_tokens)

    def decode(self, instances: Sequence[DecodeInstance]) -> int:
        return self._decode.pick_decode(instances)
