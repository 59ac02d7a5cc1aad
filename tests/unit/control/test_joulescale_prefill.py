"""JouleScale's prefill refinements: anticipating an arrival and a ready clock between batches."""

from __future__ import annotations

from joulescale.control import Observation, make_policy
from joulescale.control.mpc import priced_plan
from joulescale.control.predictor import ProfilePredictor
from joulescale.control.prefill_mpc import PrefillMpc
from joulescale.control.prefill_plan import queued_prompts

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


def test_an_idle_prefill_instance_readies_a_clock_for_the_large_batches_it_has_seen() -> None:
    small, large = (
        make_policy("joulescale", context(profile=TP4)),
        make_policy("joulescale", context(profile=TP4)),
    )
    for i in range(5):
        small.decide(prefill_obs(waiting=0, running=1, context_tokens=500, now_s=i * 0.05))
        large.decide(prefill_obs(waiting=0, running=1, context_tokens=4500, now_s=i * 0.05))
    assert small.decide(_idle(1.0)).sm_clock_mhz < large.decide(_idle(1.0)).sm_clock_mhz


def test_seen_through_scrapes_a_small_batch_in_flight_does_not_lower_the_clock_below_ready() -> None:
    policy = make_policy("joulescale", context(profile=TP4))
    policy.decide(prefill_obs(waiting=0, running=1, context_tokens=4500, now_s=0.0))
    ready = policy.decide(_idle(0.5)).sm_clock_mhz
    small = policy.decide(
        prefill_obs(waiting=0, running=1, context_tokens=300, now_s=1.0, sm_clock_mhz=ready)
    )
    assert small.sm_clock_mhz >= ready
    fresh = make_policy("joulescale", context(profile=TP4))
    assert fresh.decide(prefill_obs(waiting=0, running=1, context_tokens=300, now_s=1.0)).sm_clock_mhz < ready
