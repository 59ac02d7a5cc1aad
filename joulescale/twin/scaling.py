"""What the coarse tier and a twin run exchange: targets, replica tenures, observed traffic.

A ``Scaler`` (the planner's adapter, or a fixed schedule) is shown the ``ObservedTraffic`` and the
``Placement`` as the operator sees it, and answers with a ``Target``: replicas, profile and base
clock per role. ``Tenure`` records when each replica's GPUs belonged to the service.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from joulescale.engines.observation import Phase
from joulescale.twin.request import SimRequest


@dataclass(frozen=True, slots=True)
class Target:
    """What a plan asks of the cluster: replicas and base clocks per role."""

    prefill: int
    decode: int
    prefill_base_mhz: int | None = None
    decode_base_mhz: int | None = None
    prefill_profile: str | None = None
    """The profile (model, GPU, TP) of the role's replicas; None: the cluster's for that phase."""
    decode_profile: str | None = None

    def __post_init__(self) -> None:
        if self.prefill < 1 or self.decode < 1:
            raise ValueError("a plan keeps at least one prefill and one decode replica")

    def base_mhz(self, phase: Phase) -> int | None:
        return self.prefill_base_mhz if phase == "prefill" else self.decode_base_mhz

    def replicas(self, phase: Phase) -> int:
        return self.prefill if phase == "prefill" else self.decode

    def profile(self, phase: Phase) -> str | None:
        return self.prefill_profile if phase == "prefill" else self.decode_profile


@dataclass(slots=True)
class Tenure:
    """When one replica's GPUs belonged to the service: from ``held_s`` (its pod was scheduled),
    serving from ``ready_s``, draining from ``drain_s``, given back at ``released_s``."""

    phase: Phase
    index: int
    gpus: int
    held_s: float
    ready_s: float
    profile: str = ""
    drain_s: float | None = None
    released_s: float | None = None

    def held_until(self, horizon_s: float) -> float:
        return horizon_s if self.released_s is None else min(self.released_s, horizon_s)


class ObservedTraffic:
    """What the planner may read at ``now_s``: arrivals with their prompt lengths (the gateway's
    request and prompt-token counters) and the output lengths of requests finished by then."""

    def __init__(self, requests: Sequence[SimRequest], finished: Sequence[tuple[float, int]], now_s: float) -> None:
        self._requests = requests
        self._arrivals = [r.arrival_s for r in requests]
        self._finished = finished
        self.now_s = now_s

    def arrivals(self, since_s: float) -> list[tuple[float, int]]:
        """``(arrival_s, prompt_tokens)`` of the requests that arrived in ``(since_s, now_s]``."""
        lo = bisect.bisect_right(self._arrivals, since_s)
        hi = bisect.bisect_right(self._arrivals, self.now_s)
        return [(r.arrival_s, r.prompt_tokens) for r in self._requests[lo:hi]]

    def latencies_ms(self, since_s: float) -> tuple[list[float], list[float]]:
        """TTFTs of the first tokens and TPOTs of the completions in ``(since_s, now_s]`` (what the
        engines' latency histograms gained), in ms."""
        now = self.now_s
        hi = bisect.bisect_right(self._arrivals, now)
        ttft = [r.ttft_s * 1000.0 for r in self._requests[:hi] if since_s < r.first_token_s <= now]
        tpot = [r.tpot_s * 1000.0 for r in self._requests[:hi]
                if since_s < r.finish_s <= now and r.output_tokens > 1]
        return ttft, tpot

    def output_lengths(self, since_s: float) -> list[int]:
        """Output tokens of the requests that finished in ``(since_s, now_s]``."""
        finish = [f for f, _ in self._finished]
        lo = bisect.bisect_right(finish, since_s)
        hi = bisect.bisect_right(finish, self.now_s)
        return [tokens for _, tokens in self._finished[lo:hi]]


@dataclass(frozen=True, slots=True)
class Placement:
    """The replicas as the operator sees them: serving, starting and draining per role."""

    serving: dict[Phase, int]
    starting: dict[Phase, int]
    draining: dict[Phase, int]
    base_mhz: dict[Phase, int | None]

    def active(self, phase: Phase) -> int:
        """Replicas that are or will be serving (what a Deployment's replica count says)."""
        return self.serving[phase] + self.starting[phase]


class Scaler(Protocol):
    """The coarse tier seen from the twin: asked every ``interval_s``; None leaves things as they are."""

    @property
    def interval_s(self) -> float: ...

    def target(self, traffic: ObservedTraffic, placement: Placement) -> Target | None: ...


@dataclass(slots=True)
class ScheduledScaler:
    """Targets fixed in advance, ``(from_s, target)`` in time order (tests, what-if runs)."""

    schedule: Sequence[tuple[float, Target]]
    interval_s: float = 1.0

    def target(self, traffic: ObservedTraffic, placement: Placement) -> Target | None:
        chosen = None
        for from_s, target in self.schedule:
            if from_s <= traffic.now_s:
                chosen = target
        return chosen
