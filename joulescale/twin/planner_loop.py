"""The planner in the twin's loop: the operator's ``Planner``, fed what the twin observed.

Every planner interval ``PlannerScaler`` builds the ``TrafficWindow`` the operator would get from
Prometheus: the requests that arrived in the interval with their prompt lengths, their count per
minute (the request counter's increase per sub-window), the output
lengths of the requests that finished in it (an engine's generation-length histogram fills at
completion), paired in order; and which role's SLO percentile was missed in it (the engines'
TTFT and inter-token histograms: TTFT is prefill's, TPOT decode's). It calls ``Planner.plan`` and turns the placement into a
``Target`` the way the operator's status carries it: replicas, one profile (TP degree) and one
base clock per role. A placement that mixes candidates within a role (the program may) runs its
role on the profile of the allocation with the most GPUs, with as many of its replicas as hold
the role's GPUs (rounded up), at the highest base clock among them; ``mixed`` counts such
intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from joulescale.control.policy import Slo
from joulescale.engines.observation import Phase
from joulescale.planning import Allocation, Candidate, PlanDecision, Planner, TrafficWindow
from joulescale.planning import Placement as PlannedPlacement
from joulescale.planning.candidates import PHASES
from joulescale.planning.window import MAX_LENGTH_SAMPLES, sub_window_counts, subsample
from joulescale.twin.elastic import ObservedTraffic, Placement, Target
from joulescale.twin.metrics import percentile


def target_of(placement: PlannedPlacement) -> tuple[Target, bool]:
    """The role-level target of a placement, and whether a role mixed candidates."""
    mixed = False
    chosen: dict[Phase, tuple[int, str, int]] = {}
    for phase in PHASES:
        allocations = placement.role(phase)
        if not allocations:
            raise ValueError(f"the placement has no {phase} replica")
        main = max(allocations, key=lambda a: (a.replicas * a.candidate.gpus, a.candidate.base_clock_mhz))
        mixed = mixed or len({(a.candidate.profile, a.candidate.base_clock_mhz) for a in allocations}) > 1
        gpus = sum(a.replicas * a.candidate.gpus for a in allocations)
        chosen[phase] = (-(-gpus // main.candidate.gpus), main.candidate.profile,
                         max(a.candidate.base_clock_mhz for a in allocations))
    (p_count, p_profile, p_mhz), (d_count, d_profile, d_mhz) = chosen["prefill"], chosen["decode"]
    return Target(p_count, d_count, p_mhz, d_mhz, p_profile, d_profile), mixed


def placement_of(target: Target, candidates: Sequence[Candidate]) -> PlannedPlacement:
    """The planner's view of a role-level target (its candidates' nearest base clock)."""
    allocations = []
    for phase in PHASES:
        profile = target.profile(phase)
        own = [c for c in candidates if c.phase == phase and c.profile == profile]
        if not own:
            raise ValueError(f"no {phase} candidate of profile {profile}")
        wanted = target.base_mhz(phase)
        top = max(c.base_clock_mhz for c in own)
        clock = top if wanted is None else min((c.base_clock_mhz for c in own), key=lambda m: abs(m - wanted))
        candidate = next(c for c in own if c.base_clock_mhz == clock)
        allocations.append(Allocation(candidate, target.replicas(phase)))
    return PlannedPlacement.of(allocations)


def observed_window(traffic: ObservedTraffic, since_s: float, seed: int = 0) -> TrafficWindow:
    """What Prometheus holds about ``(since_s, now]``: arrivals and prompt lengths, completed outputs."""
    arrivals = traffic.arrivals(since_s)
    outputs = traffic.output_lengths(since_s)
    prompts = [p for _, p in arrivals]
    if prompts and outputs:
        n = max(len(prompts), len(outputs))
        pairs = [(prompts[i % len(prompts)], outputs[i % len(outputs)]) for i in range(n)]
        pairs = subsample(pairs, MAX_LENGTH_SAMPLES, seed)
    else:
        pairs = []
    return TrafficWindow(since_s, traffic.now_s, len(arrivals), tuple(p for p, _ in pairs),
                         tuple(o for _, o in pairs), sub_window_counts([t for t, _ in arrivals], since_s, traffic.now_s))


def slo_missed(traffic: ObservedTraffic, since_s: float, slo: Slo) -> bool:
    """The interval's TTFT or TPOT percentile over its target, from what finished in it."""
    return bool(missed_roles(traffic, since_s, slo))


def missed_roles(traffic: ObservedTraffic, since_s: float, slo: Slo) -> frozenset[Phase]:
    """The roles whose latency percentile the interval missed: TTFT is prefill's, TPOT decode's
    (the engines' TTFT and inter-token histograms, by role)."""
    ttft_ms, tpot_ms = traffic.latencies_ms(since_s)
    missed: set[Phase] = set()
    if ttft_ms and percentile(ttft_ms, slo.percentile) > slo.ttft_ms:
        missed.add("prefill")
    if tpot_ms and percentile(tpot_ms, slo.percentile) > slo.tpot_ms:
        missed.add("decode")
    return frozenset(missed)


@dataclass(slots=True)
class PlannerScaler:
    """The ``Scaler`` that runs ``planner`` every ``planner.settings.interval_s``."""

    planner: Planner
    current: PlannedPlacement
    """The placement running at the start (the planner's view of it)."""
    decisions: list[PlanDecision] = field(default_factory=list)
    windows: list[TrafficWindow] = field(default_factory=list)
    mixed: int = 0

    @property
    def interval_s(self) -> float:
        return self.planner.settings.interval_s

    def target(self, traffic: ObservedTraffic, placement: Placement) -> Target | None:
        now_s = traffic.now_s
        if now_s <= 0.0:
            return None  # nothing observed yet; the starting placement runs
        since_s = max(0.0, now_s - self.interval_s)
        window = observed_window(traffic, since_s, seed=len(self.windows))
        self.windows.append(window)
        decision = self.planner.plan(window, self.current, now_s, missed_roles(traffic, since_s,
                                                                               self.planner.settings.slo))
        self.decisions.append(decision)
        self.current = decision.placement
        if not decision.placement.allocations:
            return None
        target, mixed = target_of(decision.placement)
        self.mixed += mixed
        return target
