"""The prefill MPC step shared by BiScale and JouleScale (docs/policies.md, "biscale")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from joulescale.control.context import PolicyContext
from joulescale.control.mpc import MpcProblem
from joulescale.control.predictor import LatencyPredictor
from joulescale.control.prefill_plan import PlannedBatch, project_batches, queued_prompts
from joulescale.engines.observation import Observation
from joulescale.profiles import physics

Solver = Callable[[MpcProblem], "list[int] | None"]

_QUEUE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class PrefillPlan:
    sm_clock_mhz: int
    at_risk: bool
    """Even the top clock misses a TTFT budget within the horizon."""
    energy_optimal: bool
    """The first batch runs at its own lowest-cost level (no deadline binds it)."""
    current_misses: bool
    """Running the first batch at the current clock would miss a deadline."""
    batch_tokens: int
    squared_tokens: float
    predicted_s: float
    next_sm_clock_mhz: int | None = None
    """The plan's clock for the batch after the first, when it has one."""


class PrefillMpc:
    """Plans clocks over the next batches; ``include_idle`` charges only power above idle."""

    def __init__(
        self,
        context: PolicyContext,
        predictor: LatencyPredictor,
        levels_mhz: tuple[int, ...],
        solver: Solver,
        include_idle: bool,
        reserve_s: float = 0.0,
        separate_in_flight: bool = False,
    ) -> None:
        self.context = context
        self.predictor = predictor
        self.levels_mhz = levels_mhz
        self.solver = solver
        self.reserve_s = reserve_s
        """Time kept back from every TTFT budget (e.g. the clock settle time)."""
        self.separate_in_flight = separate_in_flight
        """Plan the running requests as a batch of their own (BiScale's projection merges them
        with the waiting ones, so its first batch is larger than the one in flight)."""
        self._idle_watts = context.profile.idle_power_watts if include_idle else 0.0
        self._net_watts: dict[int, list[float]] = {}
        """Per prompts in a batch (power depends on the batch), per level."""

    def plan(
        self,
        observation: Observation,
        prompt_tokens_estimate: float,
        anticipate_arrival: bool = False,
        in_flight_elapsed_s: float = 0.0,
        arrival_tokens: float | None = None,
    ) -> PrefillPlan | None:
        """None when there is nothing to prefill.

        ``anticipate_arrival`` adds one prompt of the estimated length arriving now, after the
        queue in a batch of its own: a request that arrives while this batch runs cannot join
        it, so a slow batch must still leave it its TTFT (``arrival_tokens`` long; default the
        estimate). ``in_flight_elapsed_s``: how long the
        running batch has run already (with ``separate_in_flight``), so only its rest is planned.
        """
        context = self.context
        prompts = queued_prompts(observation, prompt_tokens_estimate, _QUEUE_LIMIT)
        budget_s = context.ttft_budget_s - self.reserve_s
        in_flight = observation.running_requests if self.separate_in_flight else 0
        batches = project_batches(prompts, budget_s, context.token_budget, context.settings.prefill.mpc_horizon, in_flight)
        if not batches:
            return None
        if anticipate_arrival and len(batches) < context.settings.prefill.mpc_horizon:
            length = prompt_tokens_estimate if arrival_tokens is None else arrival_tokens
            tokens = max(1, min(context.token_budget, round(length)))
            batches.append(PlannedBatch(tokens, float(tokens * tokens), budget_s))
        predict = self.predictor.prefill_s
        times = [[predict(b.tokens, b.squared_tokens, f) for f in self.levels_mhz] for b in batches]
        if in_flight and in_flight_elapsed_s > 0:
            if observation.queue is None:
                # A scrape tells how long the batch's requests waited, not how long it has run.
                first = batches[0]
                batches[0] = PlannedBatch(first.tokens, first.squared_tokens, first.deadline_s - in_flight_elapsed_s)
            first_s = predict(batches[0].tokens, batches[0].squared_tokens, observation.sm_clock_mhz)
            left = max(0.0, 1.0 - in_flight_elapsed_s / first_s) if first_s > 0 else 1.0
            times[0] = [t * left for t in times[0]]
        costs = [[w * t for w, t in zip(self._net_watts_of(b), row, strict=True)] for b, row in zip(batches, times, strict=True)]
        problem = MpcProblem(times, costs, [b.deadline_s for b in batches])
        first = batches[0]
        top = len(self.levels_mhz) - 1
        levels = self.solver(problem)
        if levels is None:
            return PrefillPlan(
                self.levels_mhz[top], True, False, True, first.tokens, first.squared_tokens, times[0][top]
            )
        chosen = levels[0]
        free = min(range(len(costs[0])), key=lambda level: (costs[0][level], level))
        current_s = predict(first.tokens, first.squared_tokens, observation.sm_clock_mhz)
        return PrefillPlan(
            sm_clock_mhz=self.levels_mhz[chosen],
            at_risk=False,
            energy_optimal=chosen == free,
            current_misses=_misses(problem, levels, current_s),
            batch_tokens=first.tokens,
            squared_tokens=first.squared_tokens,
            predicted_s=times[0][chosen],
            next_sm_clock_mhz=self.levels_mhz[levels[1]] if len(levels) > 1 else None,
        )


    def _net_watts_of(self, batch: PlannedBatch) -> list[float]:
        """Power above idle (or all of it) of the instance per level, for this batch's prompts."""
        prompts = physics.prompts_in_batch(batch.tokens, batch.squared_tokens)
        watts = self._net_watts.get(prompts)
        if watts is None:
            profile = self.context.profile
            watts = [profile.tensor_parallel_size
                     * (physics.busy_power_watts(profile, "prefill", f, prompts) - self._idle_watts)
                     for f in self.levels_mhz]
            self._net_watts[prompts] = watts
        return watts


def _misses(problem: MpcProblem, levels: list[int], first_s: float) -> bool:
    elapsed = first_s
    if elapsed > problem.deadlines_s[0]:
        return True
    for i in range(1, len(levels)):
        elapsed += problem.times_s[i][levels[i]]
        if elapsed > problem.deadlines_s[i]:
            return True
    return False
