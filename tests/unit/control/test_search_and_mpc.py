"""Clock searches, queue projection and the prefill MPC solvers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.control.mpc import MpcProblem, _plan_at, _switches, greedy_descent, priced_plan
from joulescale.control.prefill_plan import project_batches, queued_prompts
from joulescale.control.search import lowest_energy_index, lowest_feasible_index
from joulescale.profiles import physics as ph

from .helpers import TP8, prefill_obs

CLOCKS = TP8.supported_sm_clocks_mhz


@given(batch=st.integers(1, 512), context=st.integers(0, 400_000), budget_ms=st.floats(5, 200))
def test_binary_search_finds_the_lowest_clock_that_fits(batch: int, context: int, budget_ms: float) -> None:
    def latency(clock: int) -> float:
        return ph.decode_latency_s(TP8, batch, context, clock)

    fitting = [i for i, f in enumerate(CLOCKS) if latency(f) <= budget_ms / 1000]
    assert lowest_feasible_index(CLOCKS, latency, budget_ms / 1000) == (fitting[0] if fitting else None)


@given(
    batch=st.integers(1, 1024),
    start=st.integers(0, len(CLOCKS) - 1),
    phase=st.sampled_from(["prefill", "decode"]),
)
def test_the_downhill_walk_finds_the_global_energy_minimum_from_any_start(
    batch: int, start: int, phase: str
) -> None:
    def energy(clock: int) -> float:
        if phase == "prefill":
            latency = ph.prefill_latency_s(TP8, [batch * 8], clock)
        else:
            latency = ph.decode_latency_s(TP8, batch, batch * 900, clock)
        return ph.iteration_energy_j(TP8, phase, latency, clock, 1 if phase == "prefill" else batch)  # type: ignore[arg-type]

    brute = min(range(len(CLOCKS)), key=lambda i: (energy(CLOCKS[i]), i))
    assert lowest_energy_index(CLOCKS, energy, start) == brute


def test_the_energy_walk_resolves_a_flat_top_to_its_lowest_clock() -> None:
    energies = [5.0, 4.0, 3.0, 3.0, 3.0]
    assert lowest_energy_index(range(5), lambda i: energies[i], start=4) == 2


def test_batches_are_filled_in_arrival_order_and_chunked_at_the_token_budget() -> None:
    batches = project_batches(
        [(3000, 0.1), (3000, 0.0), (500, 0.2)], ttft_budget_s=0.5, max_batch_tokens=4000, horizon=8
    )
    assert [b.tokens for b in batches] == [4000, 2500]
    assert batches[0].squared_tokens == 3000**2 + 1000**2
    assert batches[0].deadline_s == pytest.approx(0.4)
    assert batches[1].deadline_s == pytest.approx(0.3)


def test_a_batch_that_finishes_no_request_has_no_deadline() -> None:
    batches = project_batches([(10_000, 0.0)], ttft_budget_s=0.5, max_batch_tokens=4000, horizon=8)
    assert [b.deadline_s for b in batches] == [math.inf, math.inf, 0.5]


def test_the_projection_stops_at_the_horizon() -> None:
    batches = project_batches([(1000, 0.0)] * 100, ttft_budget_s=0.5, max_batch_tokens=2000, horizon=3)
    assert len(batches) == 3


def test_the_metrics_only_queue_spreads_waits_from_the_oldest_to_zero() -> None:
    prompts = queued_prompts(prefill_obs(waiting=3, running=1, oldest_wait_s=0.4), 900.0, limit=100)
    assert prompts == [(900, 0.4), (900, 0.30000000000000004), (900, 0.2), (900, 0.1)]
    assert queued_prompts(prefill_obs(waiting=3, running=1, oldest_wait_s=None), 900.0, limit=2) == [
        (900, 0.0),
        (900, 0.0),
    ]


def _problem(times: list[list[float]], costs: list[list[float]], deadlines: list[float]) -> MpcProblem:
    return MpcProblem(times, costs, deadlines)


U_TIMES = [0.30, 0.20, 0.15, 0.12]
U_COSTS = [90.0, 70.0, 80.0, 100.0]


@pytest.mark.parametrize("solver", [greedy_descent, priced_plan])
def test_with_loose_deadlines_every_batch_runs_at_its_cheapest_level(solver: object) -> None:
    problem = _problem([U_TIMES] * 3, [U_COSTS] * 3, [math.inf, math.inf, 10.0])
    assert solver(problem) == [1, 1, 1]  # type: ignore[operator]


@pytest.mark.parametrize("solver", [greedy_descent, priced_plan])
def test_when_even_the_top_level_misses_there_is_no_plan(solver: object) -> None:
    problem = _problem([U_TIMES] * 2, [U_COSTS] * 2, [0.1, 0.3])
    assert solver(problem) is None  # type: ignore[operator]


@pytest.mark.parametrize("solver", [greedy_descent, priced_plan])
def test_a_tight_deadline_raises_levels_just_enough(solver: object) -> None:
    problem = _problem([U_TIMES] * 2, [U_COSTS] * 2, [math.inf, 0.36])
    plan = solver(problem)  # type: ignore[operator]
    assert plan is not None
    assert problem.feasible(plan)
    assert sorted(plan) == [1, 2]


problems = st.integers(1, 8).flatmap(
    lambda horizon: st.tuples(
        st.lists(
            st.lists(st.floats(0.01, 1.0), min_size=5, max_size=5).map(lambda t: sorted(t, reverse=True)),
            min_size=horizon,
            max_size=horizon,
        ),
        st.lists(st.lists(st.floats(1.0, 500.0), min_size=5, max_size=5), min_size=horizon, max_size=horizon),
        st.lists(st.one_of(st.just(math.inf), st.floats(0.05, 6.0)), min_size=horizon, max_size=horizon),
    )
)


@settings(max_examples=200)
@given(problem=problems, solver=st.sampled_from([greedy_descent, priced_plan]))
def test_a_plan_always_meets_every_deadline(
    problem: tuple[list[list[float]], list[list[float]], list[float]], solver: object
) -> None:
    mpc = MpcProblem(*problem)
    plan = solver(mpc)  # type: ignore[operator]
    top_feasible = mpc.feasible([4] * len(problem[0]))
    assert (plan is not None) == top_feasible
    if plan is not None:
        assert mpc.feasible(plan)


@settings(max_examples=200)
@given(problem=problems, extra_s=st.floats(0.0, 2.0))
def test_the_priced_plan_never_raises_the_applied_level_for_more_slack(
    problem: tuple[list[list[float]], list[list[float]], list[float]], extra_s: float
) -> None:
    times, costs, deadlines = problem
    tight = priced_plan(MpcProblem(times, costs, deadlines))
    loose = priced_plan(MpcProblem(times, costs, [d + extra_s for d in deadlines]))
    if tight is not None:
        assert loose is not None
        assert loose[0] <= tight[0]


def test_greedy_descent_can_raise_the_applied_clock_for_more_slack_the_priced_plan_cannot() -> None:
    """Why JouleScale does not use BiScale's greedy descent (docs/policies.md)."""
    times = [[0.30, 0.20, 0.15, 0.12]] * 2
    costs = [[100.0, 95.0, 98.0, 120.0], [100.0, 40.0, 80.0, 120.0]]
    greedy = [greedy_descent(MpcProblem(times, costs, [math.inf, d])) for d in (0.30, 0.32)]
    priced = [priced_plan(MpcProblem(times, costs, [math.inf, d])) for d in (0.30, 0.32)]
    assert greedy[0] is not None
    assert greedy[1] is not None
    assert greedy[1][0] > greedy[0][0]
    assert priced[0] is not None
    assert priced[1] is not None
    assert priced[1][0] <= priced[0][0]


@settings(max_examples=200)
@given(
    rows=st.lists(st.tuples(st.floats(0.01, 1.0), st.floats(1.0, 500.0)), min_size=1, max_size=9),
    price=st.floats(0.0, 1e5),
)
def test_at_any_price_a_batch_picks_a_level_of_least_cost_plus_priced_time(
    rows: list[tuple[float, float]], price: float
) -> None:
    times = sorted((t for t, _ in rows), reverse=True)
    costs = [c for _, c in rows]
    plan = _plan_at([_switches(times, costs)], price)
    best = min(c + price * t for t, c in zip(times, costs, strict=True))
    chosen = costs[plan[0]] + price * times[plan[0]]
    assert chosen == pytest.approx(best, rel=1e-9, abs=1e-9)
