"""The coarse tier: how many prefill and decode instances, of which TP degree and base clock.

Pure like the rest of the core (no cluster, GPU or network I/O). The flow, one planner interval:
a ``TrafficWindow`` of observed arrivals (the twin's replay or the operator's Prometheus query)
feeds a ``Forecaster`` and the ``memory`` (the burst rate the SLO percentile sees, the longest
prompt and the starting placement, over several intervals); the forecast's length mix selects
each ``Candidate``'s table (capacity and power, computed by the twin:
``joulescale.twin.candidate_tables``); the integer program (``program``) picks instance counts
that minimise power; ``switching`` weighs a change of TP degree against its start-up energy;
``hysteresis`` decides whether the running placement changes. docs/planner.md explains each step.
"""

from joulescale.planning.candidates import Candidate, CandidateSource, CandidateTable, enumerate_candidates
from joulescale.planning.forecast import FORECASTERS, Forecast, Forecaster, LengthMix, make_forecaster
from joulescale.planning.placement import Allocation, Placement
from joulescale.planning.planner import PlanDecision, Planner
from joulescale.planning.program import Infeasible, ProgramInput, Solved, solve_placement
from joulescale.planning.settings import PlannerSettings, ReplicaBounds
from joulescale.planning.window import TrafficWindow

__all__ = [
    "FORECASTERS",
    "Allocation",
    "Candidate",
    "CandidateSource",
    "CandidateTable",
    "Forecast",
    "Forecaster",
    "Infeasible",
    "LengthMix",
    "Placement",
    "PlanDecision",
    "Planner",
    "PlannerSettings",
    "ProgramInput",
    "ReplicaBounds",
    "Solved",
    "TrafficWindow",
    "enumerate_candidates",
    "make_forecaster",
    "solve_placement",
]
