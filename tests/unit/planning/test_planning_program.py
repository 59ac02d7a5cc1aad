"""The placement program: its optimum equals a brute-force search, and an infeasible input says why."""

from __future__ import annotations

import itertools

import pytest

from joulescale.planning.candidates import Candidate, CandidateTable
from joulescale.planning.placement import Placement
from joulescale.planning.program import Infeasible, ProgramInput, Solved, solve_placement
from joulescale.planning.settings import ReplicaBounds

H100 = "NVIDIA-H100-80GB-HBM3"


def table(phase: str, tp: int, capacity: float, base: float, per_request: float, clock: int = 1980,
          product: str = H100) -> CandidateTable:
    candidate = Candidate(phase, f"p-tp{tp}", product, tp, clock)  # type: ignore[arg-type]
    return CandidateTable(candidate, capacity, base / 2, base, per_request, ())


TABLES = [
    table("prefill", 2, 1.5, 150.0, 160.0), table("prefill", 4, 4.2, 300.0, 210.0),
    table("prefill", 8, 13.0, 750.0, 260.0), table("prefill", 8, 8.0, 640.0, 250.0, clock=1470),
    table("decode", 4, 40.0, 1800.0, 14.0), table("decode", 4, 32.0, 1200.0, 9.0, clock=1200),
    table("decode", 8, 80.0, 3000.0, 1.0),
]


def brute_force(problem: ProgramInput) -> float:
    """Least power over every (one candidate per role, replica count) choice."""
    best = float("inf")
    by_phase = {phase: [t for t in problem.tables if t.candidate.phase == phase] for phase in ("prefill", "decode")}
    for pre, dec in itertools.product(by_phase["prefill"], by_phase["decode"]):
        for n_pre, n_dec in itertools.product(range(1, 17), range(1, 17)):
            if n_pre * pre.candidate.gpus + n_dec * dec.candidate.gpus > problem.gpu_budget[H100]:
                continue
            if n_pre * pre.capacity_rps < problem.need_rps("prefill"):
                continue
            if n_dec * dec.capacity_rps < problem.need_rps("decode"):
                continue
            power = n_pre * pre.base_watts + n_dec * dec.base_watts
            power += problem.rate_rps * (pre.joules_per_request + dec.joules_per_request)
            best = min(best, power)
    return best


@pytest.mark.parametrize("rate", [0.5, 2.0, 5.5, 9.0, 14.0])
@pytest.mark.parametrize("gpus", [16, 32])
def test_optimum_equals_brute_force(rate: float, gpus: int) -> None:
    problem = ProgramInput(TABLES, rate, 0.2, {H100: gpus}, ReplicaBounds())
    result = solve_placement(problem)
    expected = brute_force(problem)
    if expected == float("inf"):
        assert isinstance(result, Infeasible)
        return
    assert isinstance(result, Solved)
    assert result.power_watts == pytest.approx(expected, rel=1e-6)
    assert result.placement.gpus <= gpus
    for phase in ("prefill", "decode"):
        assert len(result.placement.role(phase)) == 1  # one shape per role
        assert result.capacity_rps[phase] >= problem.need_rps(phase) - 1e-9


def test_a_floor_keeps_capacity_above_the_current_load() -> None:
    low = solve_placement(ProgramInput(TABLES, 1.0, 0.2, {H100: 32}, ReplicaBounds()))
    floored = solve_placement(ProgramInput(TABLES, 1.0, 0.2, {H100: 32}, ReplicaBounds(),
                                           floor_rps={"prefill": 12.0, "decode": 12.0}))
    assert isinstance(low, Solved)
    assert isinstance(floored, Solved)
    assert low.capacity_rps["prefill"] < 12.0 <= floored.capacity_rps["prefill"]


def test_too_small_a_budget_names_the_gpu_budget_and_what_would_do() -> None:
    result = solve_placement(ProgramInput(TABLES, 30.0, 0.2, {H100: 16}, ReplicaBounds()))
    assert isinstance(result, Infeasible)
    assert result.binding == "gpu-budget"
    assert "16 x NVIDIA-H100-80GB-HBM3" in result.detail
    assert "without a budget uses" in result.detail


def test_too_few_max_replicas_name_the_replica_bound() -> None:
    bounds = ReplicaBounds(prefill_max=1, decode_max=1)
    result = solve_placement(ProgramInput(TABLES, 14.0, 0.2, {H100: 64}, bounds))
    assert isinstance(result, Infeasible)
    assert result.binding == "max-replicas"


def test_min_replicas_beyond_the_budget_name_the_min_bound() -> None:
    bounds = ReplicaBounds(prefill_min=5, decode_min=5)
    result = solve_placement(ProgramInput(TABLES, 0.5, 0.2, {H100: 16}, bounds))
    assert isinstance(result, Infeasible)
    assert result.binding == "min-replicas"


def test_a_phase_without_any_capable_candidate_is_named() -> None:
    tables = [t for t in TABLES if t.candidate.phase == "decode"]
    result = solve_placement(ProgramInput(tables, 1.0, 0.2, {H100: 16}, ReplicaBounds()))
    assert isinstance(result, Infeasible)
    assert result.binding == "no-candidate"
    assert "prefill" in result.detail


def test_budget_is_per_product() -> None:
    h200 = [table("prefill", 2, 3.0, 200.0, 150.0, product="NVIDIA-H200"),
            table("decode", 2, 30.0, 800.0, 10.0, product="NVIDIA-H200")]
    result = solve_placement(ProgramInput(TABLES + h200, 2.0, 0.2, {H100: 16, "NVIDIA-H200": 0}, ReplicaBounds()))
    assert isinstance(result, Solved)
    assert set(result.placement.gpus_by_product()) == {H100}


def test_placement_power_shares_load_by_capacity() -> None:
    from joulescale.planning.placement import Allocation

    pre, dec = TABLES[1], TABLES[4]
    placement = Placement.of([Allocation(pre.candidate, 2), Allocation(dec.candidate, 1)])
    tables = {t.candidate: t for t in TABLES}
    expected = 2 * pre.base_watts + dec.base_watts + 3.0 * (pre.joules_per_request + dec.joules_per_request)
    assert placement.power_watts(3.0, tables) == pytest.approx(expected)
