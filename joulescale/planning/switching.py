"""A change of shape must pay for itself: near-ties between TP degrees do not flip the placement.

The program's least-power placement may run a role on another profile (TP degree) than the one
running, for a few watts less: two shapes often cost nearly the same (TP2 and TP4 prefill on
H100), and the cheaper one swaps from one interval to the next as the forecast moves. A change
of shape starts every replica of the role anew, and the new ones draw power for the start-up
time while the old ones still serve. So the planner also solves the program within the running
shapes (counts may change, TP degrees not) and takes the change of shape only when

- the old and new replicas held together during the start-up fit the GPU budget (the old ones
  serve until the new ones are ready, so the switch never drops capacity), and
- the running shapes cannot carry the load at all (that program is infeasible), or it saves
  enough power to repay its start-up energy (the new replicas' idle power over the start-up
  time) within ``payback_s``.

When the running shapes cannot carry the load and the switch does not fit, the planner grows
the running shapes to the most the budget holds instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from joulescale.engines.observation import Phase
from joulescale.planning.candidates import PHASES, Candidate, CandidateTable
from joulescale.planning.placement import Placement
from joulescale.planning.program import Infeasible, Solved


def same_shape(a: Placement, b: Placement) -> bool:
    return all(a.shape(phase) == b.shape(phase) for phase in PHASES)


def within_shape(tables: Sequence[CandidateTable], current: Placement) -> list[CandidateTable]:
    """The tables of the running profiles of each role (every one of a role that runs nothing)."""
    return [t for t in tables
            if not current.shape(t.candidate.phase) or t.candidate.profile in current.shape(t.candidate.phase)]


def started_replicas(current: Placement, proposed: Placement) -> dict[tuple[Phase, str], int]:
    """Per (role, profile): replicas ``proposed`` runs beyond those ``current`` runs."""
    running = {(phase, profile): n for phase, profile, n in current.layout}
    return {(phase, profile): n - running.get((phase, profile), 0) for phase, profile, n in proposed.layout
            if n > running.get((phase, profile), 0)}


def startup_joules(current: Placement, proposed: Placement, tables: Mapping[Candidate, CandidateTable],
                   startup_s: float) -> float:
    """Energy the replicas that ``proposed`` starts draw before they serve (idle power x start-up)."""
    idle = {(a.candidate.phase, a.candidate.profile): tables[a.candidate].idle_watts
            for a in proposed.allocations if a.candidate in tables}
    return sum(n * idle.get(key, 0.0) * startup_s for key, n in started_replicas(current, proposed).items())


def transition_gpus(current: Placement, proposed: Placement) -> dict[str, int]:
    """GPUs per product held while ``proposed``'s new replicas start and ``current``'s still serve."""
    held = current.gpus_by_product()
    gpus = {(a.candidate.phase, a.candidate.profile): (a.candidate.gpu_product, a.candidate.gpus)
            for a in proposed.allocations}
    for key, n in started_replicas(current, proposed).items():
        product, per_replica = gpus[key]
        held[product] = held.get(product, 0) + n * per_replica
    return held


def weigh_shape_change(free: Solved, kept: Solved | Infeasible, current: Placement,
                       tables: Mapping[Candidate, CandidateTable], startup_s: float, payback_s: float,
                       gpu_budget: Mapping[str, int]) -> tuple[Solved | None, str]:
    """``free`` (another shape) or ``kept`` (the running shapes), and why; None: the running shapes,
    though they cannot carry the load (the change of shape would drop capacity while it starts)."""
    over = {p: n for p, n in transition_gpus(current, free.placement).items() if n > gpu_budget.get(p, 0)}
    if over:
        held = ", ".join(f"{n} x {p} (budget {gpu_budget.get(p, 0)})" for p, n in sorted(over.items()))
        return (None if isinstance(kept, Infeasible) else kept,
                f"a change of shape would hold {held} while its replicas start: kept the shape")
    if isinstance(kept, Infeasible):
        return free, "the running shape cannot carry the load"
    gain_w = kept.power_watts - free.power_watts
    cost_j = startup_joules(current, free.placement, tables, startup_s)
    if gain_w * payback_s <= cost_j:
        return kept, (f"a change of shape would save {gain_w:.0f} W, not enough to repay its start-up energy "
                      f"({cost_j / 1e3:.0f} kJ) within {payback_s:.0f} s: kept the shape")
    return free, f"a change of shape saves {gain_w:.0f} W, repaying its start-up energy ({cost_j / 1e3:.0f} kJ)"
