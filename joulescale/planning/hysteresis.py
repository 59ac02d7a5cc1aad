"""When the running placement changes: not on every wobble of the forecast.

Plans are compared by their ``layout`` (replicas per role and profile), not by base clock:

- A proposal with the running layout (only base clocks differ) is taken at once: a base clock
  changes on running replicas, nothing starts or stops.
- A proposal with another layout replaces the running placement once the program has proposed
  that layout ``confirm_intervals`` intervals in a row (two by default); the latest proposal of
  it, base clocks included, is the one taken.
- A count change of the running shapes confirms at what two proposals in a row agree on: two
  shrinks (or two growths) of different sizes confirm the smaller change, so a falling load whose
  proposals alternate between one and two replicas fewer still shrinks by one.
- Growth at once when an SLO is at risk: the running placement's capacity is below the load it
  must serve (forecast, observed or the burst rate, without margin), or the caller saw the SLO
  missed. Only the growth of the running shapes is taken at once (``grown``); a shrink, or a
  change of shape, waits for confirmation as any other (a change of shape made in a hurry would
  start every replica of the role anew while the SLO is already missed).
- Never below the current load: the program's capacity floor (``ProgramInput.floor_rps``) is the
  observed rate with its margin, so a falling forecast cannot shrink a phase under what it serves.
- Early enough for start-up: the planner plans for the rate expected ``startup_s`` ahead
  (``lookahead_rate_rps``), so a replica ordered now serves when the load it was ordered for arrives.

A change of shape (another TP degree for a role) must also pay for itself first; ``switching``
decides that before the proposal reaches the hysteresis.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from joulescale.engines.observation import Phase
from joulescale.planning.placement import Allocation, Placement


def lookahead_rate_rps(forecast_rps: float, previous_rps: float | None, latest_rps: float, interval_s: float,
                       startup_s: float) -> float:
    """The forecast, raised by the latest rise extrapolated over the start-up time (never lowered)."""
    if previous_rps is None or latest_rps <= previous_rps:
        return forecast_rps
    slope = (latest_rps - previous_rps) / interval_s
    return max(forecast_rps, latest_rps + slope * startup_s)


Layout = tuple[tuple[Phase, str, int], ...]


def grown(current: Placement, proposed: Placement, phases: Collection[Phase] = ("prefill", "decode")) -> Placement:
    """Each role of ``phases`` that ``proposed`` grows on the same single profile takes
    ``proposed``'s allocation (its base clock too); every other role keeps ``current``'s (never
    shrunk, never reshaped), except one ``current`` does not run, which takes ``proposed``'s."""
    allocations: list[Allocation] = []
    for phase in ("prefill", "decode"):
        running, wanted = current.role(phase), proposed.role(phase)
        if not running:
            allocations.extend(wanted)
        elif (phase in phases and len(running) == 1 and len(wanted) == 1
              and running[0].candidate.profile == wanted[0].candidate.profile
              and wanted[0].replicas > running[0].replicas):
            allocations.append(wanted[0])
        else:
            allocations.extend(running)
    return Placement.of(allocations)


def _direction(current: Placement, proposed: Placement) -> int:
    """+1: every role and profile grows or stays, -1: every one shrinks or stays (same profiles,
    one allocation each), 0: anything else (a change of shape, or a mix of both)."""
    running = {(phase, profile): n for phase, profile, n in current.layout}
    wanted = {(phase, profile): n for phase, profile, n in proposed.layout}
    if running.keys() != wanted.keys() or len(proposed.allocations) != len(wanted):
        return 0
    if all(wanted[k] >= running[k] for k in running):
        return 1
    if all(wanted[k] <= running[k] for k in running):
        return -1
    return 0


def _nearer(current: Placement, held: Placement, proposed: Placement, direction: int) -> Placement:
    """``proposed`` with each count moved no further from ``current`` than ``held`` moved it."""
    before = {(phase, profile): n for phase, profile, n in held.layout}
    pick = min if direction > 0 else max
    return Placement.of(Allocation(a.candidate, pick(a.replicas, before[(a.candidate.phase, a.candidate.profile)]))
                        for a in proposed.allocations)


@dataclass(slots=True)
class Hysteresis:
    confirm_intervals: int = 2
    _pending: Layout | None = None
    _held: Placement | None = None
    """The change agreed on so far (the pending one, or nearer the running placement)."""
    _streak: int = 0

    def decide(self, current: Placement, proposed: Placement,
               slo_at_risk: bool | Collection[Phase]) -> tuple[Placement, str]:
        """The placement to run from now on, and why; ``slo_at_risk``: the roles at risk (True: both)."""
        at_risk: Collection[Phase] = (("prefill", "decode") if slo_at_risk is True else
                                      () if slo_at_risk is False else slo_at_risk)
        if proposed.layout == current.layout:
            self._pending, self._held, self._streak = None, None, 0
            if proposed == current:
                return current, "the running placement stands"
            return proposed, "the same replicas: only base clocks change"
        if at_risk:
            growth = grown(current, proposed, at_risk)
            if growth.layout != current.layout:
                self._pending, self._held, self._streak = None, None, 0
                if growth == proposed:
                    return proposed, "an SLO is at risk: changed at once"
                return growth, "an SLO is at risk: the running shapes grow at once (the rest of the change waits)"
        direction = _direction(current, proposed)
        if proposed.layout == self._pending:
            self._streak += 1
            agreed = proposed
        elif direction and self._held is not None and _direction(current, self._held) == direction:
            agreed = _nearer(current, self._held, proposed, direction)
            self._streak += 1
        else:
            agreed, self._streak = proposed, 1
        self._pending, self._held = agreed.layout, agreed
        if agreed.layout == current.layout:
            self._pending, self._held, self._streak = None, None, 0
            return current, "proposals in a row disagree on the change: kept the plan"
        if self._streak >= self.confirm_intervals:
            self._pending, self._held, self._streak = None, None, 0
            return agreed, f"proposed {self.confirm_intervals} intervals in a row (the change they agree on)"
        return current, f"a new plan waits for confirmation ({self._streak}/{self.confirm_intervals})"
