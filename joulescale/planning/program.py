"""The placement program: an integer program over instance counts, solved by HiGHS through cvxpy.

Variables, per candidate c: ``n_c`` instances (integer) and ``y_c`` requests per second it serves
(continuous). Minimise mean power, sum of ``base_c n_c + e_c y_c`` (W: a powered instance costs its
base power, each request served its energy ``e_c``; ``CandidateTable``), subject to, per phase:

- capacity: ``sum cap_c n_c >= need``, with need = (1 + margin) x the planned rate (or more:
  the caller's floor, so the plan never shrinks below the current load);
- load: ``sum y_c = rate`` and ``y_c <= cap_c n_c`` (an instance serves at most its capacity);
- replicas: ``min <= sum n_c <= max`` (``spec.<role>.autoscaling``);
- one shape per role (by default): binaries ``z_c`` with ``sum z_c = 1`` and ``n_c <= max z_c``,
  since a role's pods share one ``tensorParallelSize`` and one base clock (``spec.<role>``);

and, per GPU product, ``sum gpus_c n_c <= budget``. HiGHS is the solver because the problem is a
MILP, it installs from the package index with cvxpy (``highspy``), and it needs no licence.
An infeasible program returns ``Infeasible`` naming the constraint that binds, found by relaxing
each in turn (min replicas, then the GPU budget, then max replicas), never an exception from
inside cvxpy.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joulescale.engines.observation import Phase
from joulescale.planning.candidates import PHASES, CandidateTable
from joulescale.planning.placement import Allocation, Placement
from joulescale.planning.settings import ReplicaBounds

SOLVER = "HIGHS"
_RELAXED = 10**6
"""A bound that never binds: replicas or GPUs no service reaches (the API caps replicas at 1024)."""


@dataclass(frozen=True, slots=True)
class ProgramInput:
    tables: Sequence[CandidateTable]
    rate_rps: float
    """Requests per second both phases serve (the forecast)."""
    margin: float
    gpu_budget: Mapping[str, int]
    replicas: ReplicaBounds
    floor_rps: Mapping[Phase, float] | None = None
    """Per phase, capacity the plan must keep at least (the current load with its margin)."""
    one_shape_per_role: bool = True
    """Each role runs one candidate (one TP degree, one base clock), as the service spec requires."""

    def need_rps(self, phase: Phase) -> float:
        floor = 0.0 if self.floor_rps is None else self.floor_rps.get(phase, 0.0)
        return max((1.0 + self.margin) * self.rate_rps, floor)


@dataclass(frozen=True, slots=True)
class Solved:
    placement: Placement
    power_watts: float
    """The program's objective: mean power of the placement at the planned rate."""
    capacity_rps: dict[Phase, float]
    solve_s: float


@dataclass(frozen=True, slots=True)
class Infeasible:
    binding: str
    """``no-candidate``, ``gpu-budget``, ``max-replicas``, ``min-replicas`` or ``solver``."""
    detail: str
    solve_s: float


def _bounds(replicas: ReplicaBounds, phase: Phase) -> tuple[int, int]:
    if phase == "prefill":
        return replicas.prefill_min, replicas.prefill_max
    return replicas.decode_min, replicas.decode_max


@functools.cache
def _quiet_highs() -> None:
    """HiGHS prints its banner on standard output (fd 1, from C) when a process makes its first
    solver: make that one with fd 1 on /dev/null, so a solve never writes into a command's output."""
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w", encoding="utf-8") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def solver_ready() -> str:
    """Import cvxpy and check that it has HiGHS: a process that plans (the operator with a
    Prometheus, the twin with --planner) calls it at start, not at its first interval."""
    import cvxpy as cp

    if "HIGHS" not in cp.installed_solvers():
        raise RuntimeError(f"cvxpy {cp.__version__} has no HiGHS solver (install highspy)")
    return f"cvxpy {cp.__version__} with HiGHS"


@dataclass(slots=True)
class _Compiled:
    """One program per (tables, products, shape rule), its right-hand sides as parameters: cvxpy
    canonicalises it once, and each interval's solve only sets the parameters (DPP)."""

    problem: Any
    counts: Any
    need: Any
    rate: Any
    low: Any
    high: Any
    budget: Any
    most: Any
    """Per candidate, the most instances its role's bound and its product's budget allow: the
    tightest big-M of the shape rule (a loose one makes HiGHS branch far more)."""
    products: tuple[str, ...]


@functools.lru_cache(maxsize=16)
def _compiled(tables: tuple[CandidateTable, ...], products: tuple[str, ...], one_shape: bool) -> _Compiled:
    import cvxpy as cp  # the planning extra: the core imports without it
    import numpy as np

    count = len(tables)
    capacity = np.array([t.capacity_rps for t in tables])
    base = np.array([t.base_watts for t in tables])
    energy = np.array([t.joules_per_request for t in tables])
    role = np.array([[1.0 if t.candidate.phase == phase else 0.0 for t in tables] for phase in PHASES])
    gpus = np.array([[t.candidate.gpus if t.candidate.gpu_product == p else 0 for t in tables] for p in products])
    n = cp.Variable(count, integer=True)
    y = cp.Variable(count, nonneg=True)
    need, low, high = cp.Parameter(2, nonneg=True), cp.Parameter(2, nonneg=True), cp.Parameter(2, nonneg=True)
    rate, budget = cp.Parameter(nonneg=True), cp.Parameter(len(products), nonneg=True)
    most = cp.Parameter(count, nonneg=True)
    constraints = [n >= 0, y <= cp.multiply(capacity, n), (role * capacity) @ n >= need, role @ y == rate,
                   role @ n <= high, role @ n >= low, gpus @ n <= budget]
    if one_shape:
        z = cp.Variable(count, boolean=True)
        constraints += [n <= cp.multiply(most, z), role @ z == 1]
    problem = cp.Problem(cp.Minimize(base @ n + energy @ y), constraints)
    return _Compiled(problem, n, need, rate, low, high, budget, most, products)


def _solve(problem: ProgramInput, tables: Sequence[CandidateTable], budget: bool, max_replicas: bool,
           min_replicas: bool) -> tuple[str, list[int], float]:
    import cvxpy as cp

    _quiet_highs()
    products = tuple(sorted({t.candidate.gpu_product for t in tables}))
    compiled = _compiled(tuple(tables), products, problem.one_shape_per_role)
    bounds = [_bounds(problem.replicas, phase) for phase in PHASES]
    compiled.need.value = [problem.need_rps(phase) for phase in PHASES]
    compiled.rate.value = problem.rate_rps
    compiled.low.value = [low if min_replicas else 0 for low, _ in bounds]
    compiled.high.value = [high if max_replicas else _RELAXED for _, high in bounds]
    compiled.budget.value = [problem.gpu_budget.get(p, 0) if budget else _RELAXED for p in products]
    role_high = dict(zip(PHASES, compiled.high.value, strict=True))
    compiled.most.value = [min(role_high[t.candidate.phase], (problem.gpu_budget.get(t.candidate.gpu_product, 0)
                                                              if budget else _RELAXED) // t.candidate.gpus)
                           for t in tables]
    try:
        compiled.problem.solve(solver=SOLVER, verbose=False, output_flag=False)
    except cp.error.SolverError as error:
        return f"solver error: {error}", [], 0.0
    status, counts = compiled.problem.status, compiled.counts.value
    if status not in ("optimal", "optimal_inaccurate") or counts is None:
        return str(status), [], 0.0
    return "optimal", [round(float(v)) for v in counts], float(compiled.problem.value)


def solve_placement(problem: ProgramInput) -> Solved | Infeasible:
    """The least-power placement, or why there is none."""
    started = time.perf_counter()
    tables = [t for t in problem.tables if t.capacity_rps > 0 and t.candidate.gpu_product in problem.gpu_budget]
    for phase in PHASES:
        if not any(t.candidate.phase == phase for t in tables):
            return Infeasible("no-candidate", f"no {phase} candidate on the budgeted GPU products meets the SLO "
                                              "on this length mix", time.perf_counter() - started)
    status, counts, power = _solve(problem, tables, True, True, True)
    if status == "optimal":
        placement = Placement.of(Allocation(t.candidate, c) for t, c in zip(tables, counts, strict=True))
        capacity = {phase: sum(c * t.capacity_rps for t, c in zip(tables, counts, strict=True)
                               if t.candidate.phase == phase) for phase in PHASES}
        return Solved(placement, power, capacity, time.perf_counter() - started)
    return Infeasible(*_diagnose(problem, tables, status), time.perf_counter() - started)


def _diagnose(problem: ProgramInput, tables: Sequence[CandidateTable], status: str) -> tuple[str, str]:
    needs = ", ".join(f"{phase} {problem.need_rps(phase):.3g} req/s" for phase in PHASES)
    if not status.startswith("infeasible"):
        return "solver", f"HiGHS returned {status}"
    budget = ", ".join(f"{n} x {p}" for p, n in sorted(problem.gpu_budget.items()))
    if _solve(problem, tables, True, True, False)[0] == "optimal":
        return "min-replicas", f"the min replicas ({problem.replicas}) need more GPUs than the budget ({budget})"
    if _solve(problem, tables, False, True, True)[0] == "optimal":
        _, counts, _ = _solve(problem, tables, False, False, True)
        used = sum(c * t.candidate.gpus for t, c in zip(tables, counts, strict=True))
        return "gpu-budget", f"the GPU budget ({budget}) cannot give capacity {needs}; the least-power placement " \
                             f"without a budget uses {used} GPUs"
    if _solve(problem, tables, True, False, True)[0] == "optimal":
        return "max-replicas", f"the max replicas ({problem.replicas}) are too few for capacity {needs}"
    return "gpu-budget", f"no placement within the budget ({budget}) and replica bounds gives capacity {needs}"


def most_within_shape(problem: ProgramInput, current: Placement, steps: int = 8) -> Solved | None:
    """The least-power placement of ``current``'s shapes (every shape for a role it does not run)
    at the largest share of ``problem``'s rate and floors that the budget and bounds hold (found by
    bisection to 1/2**steps); None when not even a sliver of it fits."""
    own = [t for t in problem.tables
           if not current.role(t.candidate.phase)
           or t.candidate.profile in {a.candidate.profile for a in current.role(t.candidate.phase)}]
    floors = problem.floor_rps or {}

    def at(share: float) -> Solved | Infeasible:
        return solve_placement(dataclasses.replace(problem, tables=own, rate_rps=problem.rate_rps * share,
                                                   floor_rps={p: f * share for p, f in floors.items()}))

    best: Solved | None = None
    low, high = 0.0, 1.0
    for _ in range(steps):
        share = (low + high) / 2.0
        solved = at(share)
        if isinstance(solved, Solved):
            best, low = solved, share
        else:
            high = share
    return best
