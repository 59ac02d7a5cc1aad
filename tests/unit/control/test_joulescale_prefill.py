"""JouleScale's prefill refinements: the steady clock, the hold at f_max, the long-prompt quantile and
the ready clock between batches."""

from __future__ import annotations

import math

import pytest

from joulescale.control import ClockPolicy, Observation, PolicyContext, make_policy
from joulescale.control.mpc import priced_plan
from joulescale.control.policy import DecisionReason as R
from joulescale.control.predictor import ProfilePredictor
from joulescale.control.prefill_clocks import lone_prompt_mhz, prefill_steady_mhz, prefill_sweet_spot_mhz
from joulescale.control.prefill_mpc import PrefillMpc
from joulescale.control.prefill_plan import project_batches, queued_prompts
from joulescale.control.prefill_ready import DEFAULT_SCRAPE_INTERVAL_S, ReactionTime
from joulescale.control.tracking import ClockTracker, Expectation, IterationTracker, PromptLengthQuantile
from joulescale.profiles import physics as ph

from .helpers import TP4, context, prefill_obs, queue


def test_metrics_only_running_requests_share_the_tokens_in_flight() -> None:
    observation = prefill_obs(waiting=2, running=2, oldest_wait_s=0.2, context_tokens=5000)
    assert [tokens for tokens, _ in queued_prompts(observation, 800.0, limit=10)] == [2500, 2500, 800, 800]


def test_anticipating_an_arrival_keeps_its_ttft_behind_a_slow_batch() -> None:
    ctx = context(profile=TP4)
    mpc = PrefillMpc(ctx, ProfilePredictor(TP4), ctx.allowed_mhz[::8], priced_plan, include_idle=True)
    observation = prefill_obs(queue=queue([4000], [0.0]))
    alone = mpc.plan(observation, 1500.0)
    anticipating = mpc.plan(observation, 1500.0, anticipate_arrival=True)
    assert alone is not None
    assert anticipating is not None
    assert anticipating.sm_clock_mhz > alone.sm_clock_mhz


def _idle(now_s: float) -> Observation:
    return prefill_obs(waiting=0, running=0, oldest_wait_s=None, now_s=now_s, sm_clock_mhz=1155)


def _lone(tokens: int, now_s: float, new_batch: bool = True) -> Observation:
    """Live gauges: one request running, nothing waiting; ``new_batch``: a lone prompt of the same
    length ended since the last scrape (the counters say so) and this one started."""
    ended = int(new_batch)
    return prefill_obs(waiting=0, running=1, context_tokens=tokens, now_s=now_s, iterations_delta=ended,
                       prompt_tokens_delta=tokens * ended, generation_tokens_delta=ended)


def _live_policy(ctx: PolicyContext) -> ClockPolicy:
    """JouleScale on an engine whose gauges are live: it has seen a batch start on an idle
    instance (running with no step ended since a scrape that showed nothing running)."""
    policy = make_policy("joulescale", ctx)
    policy.decide(_idle(-0.2))
    policy.decide(_lone(100, -0.1, new_batch=False))
    return policy


_REACTION_S = TP4.clock_settle_ms / 1000.0 + DEFAULT_SCRAPE_INTERVAL_S
"""Metrics-only, before any scrape interval is seen: a batch is seen one interval late, then the
new clock settles."""


def _raised_s(tokens: int, ready_mhz: int) -> float:
    """A lone prompt that starts at ``ready_mhz`` and runs at the top clock after the reaction."""
    at_ready_s = ph.prefill_latency_s(TP4, [tokens], ready_mhz)
    if at_ready_s <= _REACTION_S:
        return at_ready_s
    return _REACTION_S + (1 - _REACTION_S / at_ready_s) * ph.prefill_latency_s(TP4, [tokens], 1980)


def test_an_idle_prefill_instance_waits_at_a_clock_that_serves_the_long_prompts_it_has_seen() -> None:
    ctx = context(profile=TP4)
    small, large = _live_policy(ctx), _live_policy(ctx)
    for i in range(40):
        small.decide(_lone(500 + i, i * 0.05))
        large.decide(_lone(7000 + i, i * 0.05))
    ready = large.decide(_idle(3.0)).sm_clock_mhz
    assert small.decide(_idle(3.0)).sm_clock_mhz < ready
    # The lowest clock from which the longest prompts seen still make their TTFT once raised.
    assert _raised_s(7040, ready) <= ctx.ttft_budget_s
    assert _raised_s(7040, ctx.allowed_mhz[ctx.allowed_mhz.index(ready) - 1]) > ctx.ttft_budget_s


def test_a_fresh_prefill_instance_is_ready_for_a_lone_prompt_of_the_batch_budget() -> None:
    ctx = context(profile=TP4, token_budget=4096)
    fresh = _live_policy(ctx).decide(_idle(0.0))
    assert _raised_s(4096, fresh.sm_clock_mhz) <= ctx.ttft_budget_s
    assert fresh.urgent
    assert (
        not _live_policy(ctx)
        .decide(prefill_obs(waiting=0, running=0, oldest_wait_s=None, sm_clock_mhz=ctx.allowed_mhz[-1]))
        .urgent
    )
    few_short = _live_policy(ctx)
    for i in range(5):
        few_short.decide(_lone(100 + i, i * 0.05))
    assert few_short.decide(_idle(1.0)).sm_clock_mhz == fresh.sm_clock_mhz


def test_seen_through_scrapes_a_small_batch_in_flight_does_not_lower_the_clock_below_ready() -> None:
    policy = _live_policy(context(profile=TP4))
    for i in range(40):
        policy.decide(_lone(7000 + i, i * 0.05))
    ready = policy.decide(_idle(3.0)).sm_clock_mhz
    small = policy.decide(
        prefill_obs(waiting=0, running=1, context_tokens=300, now_s=3.5, sm_clock_mhz=ready)
    )
    assert small.sm_clock_mhz >= ready
    seen_short = _live_policy(context(profile=TP4))
    for i in range(40):
        seen_short.decide(_lone(300 + i, i * 0.05))
    assert seen_short.decide(_lone(300, 3.5)).sm_clock_mhz < ready


def test_a_relaxed_queue_never_runs_below_the_steady_clock_nor_at_the_top() -> None:
    ctx = context(profile=TP4)
    steady = prefill_steady_mhz(ctx, ProfilePredictor(TP4), ctx.settings.joulescale.prefill_flat_tolerance)
    # A lone 4000-token step no longer qualifies in the hook's view: a prompt as long arriving
    # unseen during it would miss even at f_max, so it runs there (the tests of the unseen arrival).
    for lengths in ([300], [2000, 2000], [3000]):
        decision = make_policy("joulescale", ctx).decide(
            prefill_obs(queue=queue(lengths, [0.0] * len(lengths)))
        )
        assert steady <= decision.sm_clock_mhz < ctx.allowed_mhz[-1]
    assert prefill_sweet_spot_mhz(ctx, ProfilePredictor(TP4)) < steady < ctx.allowed_mhz[-1]


def test_the_steady_clock_costs_at_most_the_tolerance_more_than_the_least_energy_clock() -> None:
    ctx = context(profile=TP4)
    steady = prefill_steady_mhz(ctx, ProfilePredictor(TP4), 0.01)
    above = ctx.allowed_mhz[ctx.allowed_mhz.index(steady) + 1]

    def net_j(clock: int) -> float:
        latency = ph.prefill_latency_s(TP4, [4096], clock)
        return ph.iteration_energy_j(TP4, "prefill", latency, clock, 1) - ph.idle_energy_j(TP4, latency)

    least = min(net_j(f) for f in ctx.allowed_mhz)
    assert net_j(steady) <= 1.01 * least < net_j(above)
    assert prefill_steady_mhz(ctx, ProfilePredictor(TP4), 10.0) == ctx.allowed_mhz[-1]


def test_once_at_risk_the_top_clock_is_held_until_the_queue_drains() -> None:
    policy = _live_policy(context(profile=TP4))
    for i in range(40):
        policy.decide(_lone(800 + i, i * 0.02))
    at_risk = policy.decide(prefill_obs(waiting=3, running=1, oldest_wait_s=0.6, now_s=1.0))
    assert (at_risk.sm_clock_mhz, at_risk.reason) == (1980, R.SLO_AT_RISK)
    draining = policy.decide(prefill_obs(waiting=1, running=1, oldest_wait_s=None, now_s=1.5, iterations_delta=1))
    assert (draining.sm_clock_mhz, draining.reason) == (1980, R.QUEUE_PRESSURE)
    drained = policy.decide(prefill_obs(waiting=0, running=1, oldest_wait_s=None, now_s=2.0, iterations_delta=1))
    assert drained.sm_clock_mhz < 1980
    fresh = make_policy("joulescale", context(profile=TP4))
    # Without a hold, a queue behind a batch running below f_max does not send it there.
    assert (
        fresh.decide(
            prefill_obs(waiting=1, running=1, oldest_wait_s=None, now_s=1.5, sm_clock_mhz=1275)
        ).sm_clock_mhz
        < 1980
    )


def test_the_running_batch_is_planned_apart_from_the_prompts_waiting_behind_it() -> None:
    prompts = [(1000, 0.0), (1000, 0.0), (500, 0.0)]
    assert [b.tokens for b in project_batches(prompts, 0.5, 8192, 8)] == [2500]
    assert [b.tokens for b in project_batches(prompts, 0.5, 8192, 8, in_flight=2)] == [2000, 500]


def test_the_long_prompt_quantile_sees_a_lone_long_prompt_through_the_kv_gauge() -> None:
    quantile = PromptLengthQuantile(quantile=0.9)
    assert quantile.tokens is None
    for i, tokens in enumerate([800] * 18 + [6000, 6000]):
        quantile.update(_lone(tokens + i, float(i)))
    assert quantile.tokens is not None
    assert quantile.tokens >= 6000
    rich = PromptLengthQuantile(quantile=0.5)
    rich.update(prefill_obs(queue=queue([100, 300, 500], [0.2, 0.1, 0.0])))
    rich.update(prefill_obs(queue=queue([300, 500], [0.1, 0.0])))
    assert rich.tokens == 300


def test_a_prefill_prediction_is_not_judged_against_a_later_batch() -> None:
    clocks = ClockTracker(settle_s=0.05)
    tracker = IterationTracker()
    expectation = Expectation(1380, 0.2, 0.2, 0.54)
    for ended, paired in ((1, True), (2, False)):
        tracker.expect(expectation)
        observation = prefill_obs(sm_clock_mhz=1380, now_s=2.0, iterations_delta=ended, last_iteration_s=0.04)
        clocks.update(observation)
        assert (tracker.outcome(observation, clocks) is not None) == paired


def test_a_batch_in_flight_is_not_slowed_while_requests_queue_behind_it() -> None:
    """A new clock settles within the running batch: slowing it would delay every
    request queued behind it, so in the metrics-only view a lower clock waits for a free queue."""
    policy = _live_policy(context(profile=TP4))
    for i in range(40):
        policy.decide(_lone(800 + i, i * 0.02))

    queued = policy.decide(
        prefill_obs(waiting=1, running=1, oldest_wait_s=None, now_s=1.5, sm_clock_mhz=1740, iterations_delta=1)
    )
    alone = policy.decide(prefill_obs(waiting=0, running=1, oldest_wait_s=None, now_s=1.6, sm_clock_mhz=1740))

    assert queued.sm_clock_mhz == 1740
    assert alone.sm_clock_mhz < 1740


def test_a_lone_batch_in_flight_runs_at_its_own_clock_and_is_ready_again_before_it_ends() -> None:
    """Metrics-only, nothing waiting: the KV gauge tells the batch's tokens, so a batch long enough
    for a new clock to settle in it is slowed to its plan's clock; close to its predicted end the
    clock goes back to the ready clock, so that a lone long prompt after it does not start low."""
    policy = _live_policy(context(profile=TP4))
    for i in range(40):
        policy.decide(_lone(7000 + i, i * 0.05))
    ready = policy.decide(_idle(3.0)).sm_clock_mhz
    seen = policy.decide(_lone(3000, 3.5))
    assert seen.sm_clock_mhz < ready
    at_ready_s = ph.prefill_latency_s(TP4, [3000], ready)
    ending = policy.decide(_lone(3000, 3.5 + at_ready_s - _REACTION_S / 2, new_batch=False))
    assert ending.sm_clock_mhz == ready


def test_seen_through_scrapes_the_time_a_batch_has_run_counts_against_its_deadline() -> None:
    """A scrape tells how long the requests waited before their batch, not how long it has run:
    the rest of the batch may be slowed only into what is left of the budget."""
    ctx = context(profile=TP4)
    mpc = PrefillMpc(ctx, ProfilePredictor(TP4), ctx.allowed_mhz[::8], priced_plan, include_idle=False,
                     separate_in_flight=True)
    observation = prefill_obs(waiting=0, running=1, oldest_wait_s=None, context_tokens=7000)
    elapsed_s = 0.25
    plan = mpc.plan(observation, 1000.0, in_flight_elapsed_s=elapsed_s)
    assert plan is not None
    assert not plan.at_risk
    left = 1 - elapsed_s / ph.prefill_latency_s(TP4, [7000], 1980)
    assert elapsed_s + left * ph.prefill_latency_s(TP4, [7000], plan.sm_clock_mhz) <= ctx.ttft_budget_s
    assert plan.sm_clock_mhz < 1980


def test_the_later_the_clock_is_raised_the_higher_a_lone_prompt_must_start() -> None:
    ctx = context(profile=TP4)
    predictors = (ProfilePredictor(TP4),)
    clocks = [
        lone_prompt_mhz(ctx.allowed_mhz, predictors, 7000, ctx.ttft_budget_s, raised_after_s=reaction_s)
        for reaction_s in (0.0, 0.05, 0.15, 10.0)
    ]
    assert clocks[0] == ctx.allowed_mhz[0]
    assert clocks[0] < clocks[1] < clocks[2] <= clocks[3]
    # Never raised in time: the whole prompt must fit at the clock it starts at.
    assert ph.prefill_latency_s(TP4, [7000], clocks[3]) <= ctx.ttft_budget_s
    assert ph.prefill_latency_s(TP4, [7000], ctx.allowed_mhz[ctx.allowed_mhz.index(clocks[3]) - 1]) > ctx.ttft_budget_s


def test_without_a_kv_gauge_a_batch_in_flight_is_not_slowed_on_a_guessed_size() -> None:
    """An engine whose KV capacity the agent cannot read gives no batch size (context_tokens 0):
    the mean prompt length is only a guess, and a long prompt in flight must not be slowed on it."""
    ctx = context(profile=TP4)
    blind, gauged = _live_policy(ctx), _live_policy(ctx)
    for i in range(40):
        # Live gauges show each batch in flight; 7000-token prompts ended one by one.
        blind.decide(prefill_obs(waiting=0, running=1, now_s=i * 0.5, iterations_delta=1,
                                 prompt_tokens_delta=7000, generation_tokens_delta=1))
        gauged.decide(prefill_obs(waiting=0, running=1, context_tokens=7000, now_s=i * 0.5, iterations_delta=1,
                                  prompt_tokens_delta=7000, generation_tokens_delta=1))
    ready = blind.decide(_idle(30.0)).sm_clock_mhz
    assert ready == gauged.decide(_idle(30.0)).sm_clock_mhz
    assert blind.decide(prefill_obs(waiting=0, running=1, now_s=30.5, iterations_delta=1)).sm_clock_mhz >= ready
    assert gauged.decide(_lone(3000, 30.5, new_batch=False)).sm_clock_mhz < ready


def _ended(tokens: int, now_s: float, queued_s: float | None = None) -> Observation:
    """Step-end gauges (vLLM V1, SGLang): nothing shows running or waiting; a lone prompt ended
    since the last scrape, its queueing recorded by the queue-time histogram (exact for one)."""
    return prefill_obs(waiting=0, running=0, oldest_wait_s=None, recorded_wait_s=queued_s,
                       recorded_wait_cap_s=queued_s, now_s=now_s, sm_clock_mhz=1155,
                       iterations_delta=1, prompt_tokens_delta=tokens, generation_tokens_delta=1)


def _blind_ready(tokens: int, queued_s: float | None = None, batches: int = 40) -> int:
    policy = make_policy("joulescale", context(profile=TP4))
    for i in range(batches):
        policy.decide(_ended(tokens - i, i * 0.5, queued_s))
    return policy.decide(_idle(batches * 0.5)).sm_clock_mhz


def _below(ctx_clocks: tuple[int, ...], clock: int) -> int:
    return ctx_clocks[ctx_clocks.index(clock) - 1]


def test_where_no_batch_is_ever_seen_in_flight_the_ready_clock_serves_the_worst_recent_batch_alone() -> None:
    ctx = context(profile=TP4)
    blind = _blind_ready(7000)
    # No reaction is possible: the longest prompt seen runs entirely at the clock it starts at.
    assert ph.prefill_latency_s(TP4, [7000], blind) <= ctx.ttft_budget_s
    assert ph.prefill_latency_s(TP4, [7000], _below(ctx.allowed_mhz, blind)) > ctx.ttft_budget_s
    # Where gauges show batches in flight, the policy can raise the clock during one: it waits lower.
    seen = _live_policy(ctx)
    for i in range(40):
        seen.decide(_lone(7000 - i, i * 0.5))
    assert seen.decide(_idle(20.0)).sm_clock_mhz < blind


def test_queueing_reported_for_ended_batches_raises_the_blind_ready_clock() -> None:
    ctx = context(profile=TP4)
    calm, queued = _blind_ready(4000), _blind_ready(4000, queued_s=0.2)
    assert calm < queued

    def ttft_s(clock_mhz: int) -> float:
        # The 0.2 s were spent behind a step at 1155 MHz: at another clock that step's time scales.
        at_clock_s = ph.prefill_latency_s(TP4, [4000], clock_mhz)
        return 0.2 * at_clock_s / ph.prefill_latency_s(TP4, [4000], 1155) + at_clock_s

    assert ttft_s(queued) <= ctx.ttft_budget_s
    assert ttft_s(_below(ctx.allowed_mhz, queued)) > ctx.ttft_budget_s


def test_until_enough_batches_ended_a_blind_instance_is_ready_for_the_batch_budget_alone() -> None:
    ctx = context(profile=TP4, token_budget=6000)
    policy = make_policy("joulescale", ctx)
    for i in range(5):
        policy.decide(_ended(200, i * 0.5))
    fresh = policy.decide(_idle(3.0)).sm_clock_mhz
    assert ph.prefill_latency_s(TP4, [6000], fresh) <= ctx.ttft_budget_s
    assert ph.prefill_latency_s(TP4, [6000], _below(ctx.allowed_mhz, fresh)) > ctx.ttft_budget_s


def test_the_reaction_time_is_unbounded_until_a_batch_shows_in_flight() -> None:
    reaction = ReactionTime(settle_s=0.05)
    assert reaction.seconds(_ended(500, 1.0)) == math.inf
    reaction.update(_ended(500, 1.0))
    assert reaction.seconds(_idle(1.1)) == math.inf
    # vLLM: the rest of a prompt longer than the token budget shows running at a step end; the
    # next batch on an idle instance still shows only once done.
    reaction.update(prefill_obs(waiting=0, running=1, now_s=1.15, iterations_delta=1))
    assert reaction.seconds(_idle(1.16)) == math.inf
    reaction.update(_idle(1.17))
    reaction.update(_lone(500, 1.2, new_batch=False))
    assert reaction.seconds(_idle(1.3)) == pytest.approx(0.05 + DEFAULT_SCRAPE_INTERVAL_S)
    assert reaction.seconds(prefill_obs(queue=queue([500], [0.0]))) == 0.05  # the engine hook: settle only


def _hook_policy_after_lone_prompts(tokens: int, gap_s: float = 2.0) -> tuple[ClockPolicy, PolicyContext, float]:
    """JouleScale in the engine hook's view after 30 lone prompts of ``tokens``, ``gap_s`` apart
    (each scheduled on an idle instance, then the silence), so its long-prompt quantile is
    ``tokens`` and the arrival rate it sees 1 / ``gap_s``."""
    ctx = context(profile=TP4)
    policy = make_policy("joulescale", ctx)
    now_s = 10.0
    for _ in range(30):
        policy.decide(prefill_obs(waiting=0, running=1, now_s=now_s, sm_clock_mhz=1380,
                                  queue=queue([tokens], [0.0], now_s=now_s)))
        policy.decide(prefill_obs(waiting=0, running=0, oldest_wait_s=None, now_s=now_s + 1.0,
                                  sm_clock_mhz=1380, queue=()))
        now_s += gap_s
    return policy, ctx, now_s


def test_hook_step_leaves_an_unseen_arrival_its_ttft() -> None:
    """The hook publishes no arrival: a prompt arriving while the step runs is seen only at the
    next scheduling call, after the step. The step's clock leaves such a prompt of the estimated
    length its TTFT at f_max, settle time kept back (it ran at the steady clock before)."""
    tokens = 3000
    policy, ctx, now_s = _hook_policy_after_lone_prompts(tokens)
    decision = policy.decide(prefill_obs(waiting=0, running=1, now_s=now_s, sm_clock_mhz=1380,
                                         queue=queue([tokens], [0.0], now_s=now_s)))
    offline = ProfilePredictor(TP4)
    squared = float(tokens * tokens)
    step_s = offline.prefill_s(tokens, squared, decision.sm_clock_mhz)
    arrival_s = offline.prefill_s(tokens, squared, ctx.allowed_mhz[-1])
    assert step_s + arrival_s <= ctx.ttft_budget_s - TP4.clock_settle_ms / 1000.0
    assert decision.sm_clock_mhz < ctx.allowed_mhz[-1]


def test_hook_step_runs_at_top_without_a_hold_when_only_the_unseen_arrival_misses() -> None:
    """When even f_max cannot serve both the step and a prompt arriving during it, the step runs
    at f_max, its best chance; nothing real is at risk, so no hold keeps f_max for the queue."""
    tokens = 4000
    policy, ctx, now_s = _hook_policy_after_lone_prompts(tokens)
    top = ctx.allowed_mhz[-1]
    decision = policy.decide(prefill_obs(waiting=0, running=1, now_s=now_s, sm_clock_mhz=1380,
                                         queue=queue([tokens], [0.0], now_s=now_s)))
    assert (decision.sm_clock_mhz, decision.reason) == (top, R.SLO_FIT)
    short = policy.decide(prefill_obs(waiting=1, running=1, now_s=now_s + 0.3, sm_clock_mhz=top,
                                      queue=queue([200, 200], [0.01, 0.0], now_s=now_s + 0.3)))
    assert short.reason != R.QUEUE_PRESSURE
    assert short.sm_clock_mhz < top


def test_prompt_arrival_rate_comes_from_the_hooks_arrival_times() -> None:
    tracker = PromptLengthQuantile()
    assert tracker.arrivals_per_s() is None
    for i in range(11):  # each prompt seen twice (running, then again in a later queue): counted once
        tracker.update(prefill_obs(now_s=10.0 + 0.5 * i, queue=queue([100], [0.0], now_s=10.0 + 0.5 * i)))
        tracker.update(prefill_obs(now_s=10.2 + 0.5 * i, queue=queue([100], [0.2], now_s=10.2 + 0.5 * i)))
    assert tracker.arrivals_per_s() == pytest.approx(2.0)
    assert PromptLengthQuantile().arrivals_per_s() is None


@pytest.mark.parametrize(("gap_s", "guarded"), [(2.0, True), (120.0, False)])
def test_the_unseen_arrival_is_planned_for_only_when_one_is_likely_enough_to_miss_the_slo(
        gap_s: float, guarded: bool) -> None:
    """A 4000-token step: a prompt as long arriving unseen while it runs would miss even at f_max.
    At one prompt per 2 s one arrives during the step with a chance well over the P99 SLO's 1 %
    miss share, so the step runs at f_max; at one per 2 minutes the chance is under it, and the
    step runs at the clock its own deadline needs."""
    tokens = 4000
    policy, ctx, now_s = _hook_policy_after_lone_prompts(tokens, gap_s)
    decision = policy.decide(prefill_obs(waiting=0, running=1, now_s=now_s, sm_clock_mhz=1380,
                                         queue=queue([tokens], [0.0], now_s=now_s)))
    top = ctx.allowed_mhz[-1]
    step_s = ProfilePredictor(TP4).prefill_s(tokens, float(tokens * tokens), decision.sm_clock_mhz)
    if guarded:
        assert decision.sm_clock_mhz == top
    else:
        assert decision.sm_clock_mhz < top
        assert step_s <= ctx.ttft_budget_s - TP4.clock_settle_ms / 1000.0
