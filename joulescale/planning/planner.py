"""The planner: one decision per interval, from an observed window to the placement to run.

Clock-free and pure: the caller (the twin's loop, the operator's timer, ``joulescale plan``)
passes the window and ``now_s``; the planner keeps only its forecaster's and hysteresis' state.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace

from joulescale.engines.observation import Phase
from joulescale.planning.candidates import PHASES, Candidate, CandidateSource, CandidateTable
from joulescale.planning.forecast import Forecast, make_forecaster
from joulescale.planning.hysteresis import Hysteresis, grown, lookahead_rate_rps
from joulescale.planning.memory import TrafficMemory
from joulescale.planning.placement import Placement
from joulescale.planning.program import Infeasible, ProgramInput, Solved, most_within_shape, solve_placement
from joulescale.planning.settings import PlannerSettings
from joulescale.planning.switching import same_shape, weigh_shape_change, within_shape
from joulescale.planning.window import TrafficWindow


@dataclass(frozen=True, slots=True)
class PlanDecision:
    now_s: float
    placement: Placement
    """What to run from now on (the current placement when nothing changes)."""
    proposed: Placement | None
    """The program's least-power placement this interval (None: infeasible or no forecast yet)."""
    changed: bool
    reason: str
    forecast: Forecast | None
    planned_rate_rps: float
    """The rate the program sized for: the forecast, raised to cover the start-up time."""
    power_watts: float
    """Expected mean power of ``placement`` at the planned rate (W, all its GPUs)."""
    joules_per_token: float
    """Expected energy per output token of ``placement`` at the planned rate (0: no traffic)."""
    headroom: dict[Phase, float] = field(default_factory=dict)
    """Per phase: capacity / planned rate - 1 (inf without traffic)."""
    infeasible: Infeasible | None = None
    solve_s: float = 0.0


class Planner:
    def __init__(self, settings: PlannerSettings, source: CandidateSource) -> None:
        self.settings = settings
        self.source = source
        self.forecaster = make_forecaster(settings.forecaster)
        self.hysteresis = Hysteresis(settings.confirm_intervals)
        self.memory = TrafficMemory(settings.remember_s, settings.slo.percentile)
        self._previous_rps: float | None = None
        self._started = False

    def plan(self, window: TrafficWindow, current: Placement, now_s: float,
             slo_missed: bool | Collection[Phase] = False) -> PlanDecision:
        """Observe ``window`` (just closed), then decide the placement for the next interval;
        ``slo_missed``: the roles whose SLO the window missed (TTFT: prefill, TPOT: decode; True:
        both, when the caller cannot tell)."""
        settings = self.settings
        self.forecaster.observe(window)
        self.memory.observe(window)
        previous, self._previous_rps = self._previous_rps, window.rate_rps
        forecast = self.forecaster.forecast()
        if forecast is None:
            return PlanDecision(now_s, current, None, False, "no traffic observed yet: nothing to plan", None,
                                0.0, 0.0, 0.0)
        forecast = replace(forecast, mix=self.memory.widen(forecast.mix))
        rate = lookahead_rate_rps(forecast.rate_rps, previous, window.rate_rps, settings.interval_s, settings.startup_s)
        tables = {t.candidate: t for t in self.source.tables(forecast.mix, settings.slo)}
        if not self._started:
            self._started = True
            if current.allocations and settings.remember_s > 0:
                self.memory.hold(current, now_s)
        floor = {phase: max((1.0 + settings.margin) * window.rate_rps, self.memory.floor_rps(phase, now_s, tables))
                 for phase in PHASES}
        program = ProgramInput(list(tables.values()), rate, settings.margin, settings.gpu_budget, settings.replicas,
                               floor)
        result = solve_placement(program)
        serving = max(rate, window.rate_rps, self.memory.burst_rps())
        missed = set(PHASES) if slo_missed is True else set() if slo_missed is False else set(slo_missed)
        at_risk = [phase for phase in PHASES if phase in missed or current.capacity_rps(phase, tables) < serving]
        if isinstance(result, Infeasible):
            most = most_within_shape(program, current)
            chosen = current if most is None else grown(current, most.placement)
            how = ("kept the running placement" if chosen.layout == current.layout else
                   "the running shapes grow to the most the budget holds")
            return self._decision(now_s, chosen, None, current, f"infeasible ({result.binding}): {result.detail}; {how}",
                                  forecast, rate, tables, result, result.solve_s)
        solve_s, note = result.solve_s, ""
        kept: Solved | Infeasible | None = None
        weighed: Solved | None = result
        if current.allocations and not same_shape(current, result.placement):
            kept = solve_placement(replace(program, tables=within_shape(program.tables, current)))
            solve_s += kept.solve_s
            weighed, note = weigh_shape_change(result, kept, current, tables, settings.startup_s, settings.payback_s,
                                               settings.gpu_budget)
            note = f" ({note})"
        if weighed is None:  # the running shapes cannot carry the load, and a switch would drop capacity
            weighed = most_within_shape(program, current)
            if weighed is None:
                return self._decision(now_s, current, result, current, "kept the running placement" + note,
                                      forecast, rate, tables, None, solve_s)
        if at_risk and current.allocations and not same_shape(current, weighed.placement):
            chosen, reason = self.hysteresis.decide(current, weighed.placement, False)
            within = kept if isinstance(kept, Solved) else most_within_shape(program, current)
            if chosen == current and within is not None and \
                    grown(current, within.placement, at_risk).layout != current.layout:
                chosen = grown(current, within.placement, at_risk)
                reason = f"an SLO is at risk: the running shapes grow at once, the change of shape waits ({reason})"
        else:
            chosen, reason = self.hysteresis.decide(current, weighed.placement, at_risk)
        return self._decision(now_s, chosen, weighed, current, reason + note, forecast, rate, tables, None, solve_s)

    def _decision(self, now_s: float, chosen: Placement, solved: Solved | None, current: Placement, reason: str,
                  forecast: Forecast, rate: float, tables: dict[Candidate, CandidateTable],
                  infeasible: Infeasible | None, solve_s: float) -> PlanDecision:
        power = chosen.power_watts(rate, tables)
        tokens = rate * forecast.mix.mean_output_tokens
        headroom = {phase: (chosen.capacity_rps(phase, tables) / rate - 1.0) if rate > 0 else float("inf")
                    for phase in PHASES}
        return PlanDecision(now_s, chosen, None if solved is None else solved.placement, chosen != current, reason,
                            forecast, rate, power, power / tokens if tokens > 0 else 0.0, headroom, infeasible,
                            solve_s)
