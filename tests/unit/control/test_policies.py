"""What each policy decides, and why."""

from __future__ import annotations

import pytest

from joulescale.control import (
    ClockBounds,
    ClockDecision,
    DecisionReason,
    Observation,
    Slo,
    UnknownPolicyError,
    make_policy,
    policy_names,
)
from joulescale.control.settings import DecodeSettings, JouleScaleSettings, PolicySettings, VoltanaSettings
from joulescale.profiles import physics as ph

from .helpers import TP8, context, decode_obs, prefill_obs, progress, queue

R = DecisionReason


def _decode_energy_j(clock: int, batch: int = 64, tokens: int = 64_000) -> float:
    return ph.iteration_energy_j(TP8, "decode", ph.decode_latency_s(TP8, batch, tokens, clock), clock, batch)


def test_the_factory_builds_the_four_policies_and_rejects_other_names() -> None:
    assert set(policy_names()) == {"static", "voltana", "biscale", "joulescale"}
    for name in policy_names():
        assert make_policy(name, context()).name == name
    with pytest.raises(UnknownPolicyError, match="joulescale"):
        make_policy("oracle", context())


def test_static_runs_its_clock_snapped_into_the_bounds_or_else_the_top_clock() -> None:
    bounded = context(bounds=ClockBounds(min_mhz=900, max_mhz=1800), static_clock_mhz=1201)
    assert make_policy("static", bounded).decide(decode_obs()) == ClockDecision(1215, R.STATIC)
    assert make_policy("static", context(static_clock_mhz=5000)).decide(prefill_obs()).sm_clock_mhz == 1980
    assert (
        make_policy("static", bounded.__class__(profile=TP8, slo=bounded.slo))
        .decide(decode_obs())
        .sm_clock_mhz
        == 1980
    )


def test_biscale_decode_runs_the_lowest_clock_that_fits_the_tpot_budget() -> None:
    decision = make_policy("biscale", context(slo=Slo(ttft_ms=600, tpot_ms=20))).decide(decode_obs())
    fitting = [f for f in TP8.supported_sm_clocks_mhz if ph.decode_latency_s(TP8, 64, 64_000, f) <= 0.018]
    assert decision == ClockDecision(
        fitting[0], R.SLO_FIT, False, ph.decode_latency_s(TP8, 64, 64_000, fitting[0])
    )


def test_joulescale_decode_runs_the_lowest_fitting_clock_while_continuously_busy() -> None:
    """Under continuous batching the batch grows as iterations slow down, so the energy per
    token follows the power: the lowest clock that fits is the cheapest (docs/policies.md)."""
    biscale = make_policy("biscale", context()).decide(decode_obs())
    joulescale = make_policy("joulescale", context()).decide(decode_obs())
    assert biscale.sm_clock_mhz == TP8.min_sm_clock_mhz
    assert (joulescale.sm_clock_mhz, joulescale.reason) == (TP8.min_sm_clock_mhz, R.SLO_FIT)


def test_joulescale_decode_tightens_its_budget_as_the_kv_cache_fills_and_biscale_does_not() -> None:
    """Between the soft KV usage and the hard guard, JouleScale raises the clock step by step so
    the batch drains before the guard forces f_max; below the soft usage nothing changes."""
    slo = Slo(ttft_ms=600, tpot_ms=40)

    def clock(name: str, usage: float) -> int:
        return make_policy(name, context(slo=slo)).decide(decode_obs(kv_cache_usage=usage)).sm_clock_mhz

    low, soft, mid, near = (clock("joulescale", u) for u in (0.3, 0.7, 0.8, 0.89))
    tight = 0.036 * 0.75
    expected_mid = min(
        f for f in TP8.supported_sm_clocks_mhz if ph.decode_latency_s(TP8, 64, 64_000, f) <= tight
    )

    assert low == soft
    assert low < mid <= near < TP8.max_sm_clock_mhz
    assert mid == expected_mid
    assert clock("joulescale", 0.9) == TP8.max_sm_clock_mhz
    assert clock("biscale", 0.3) == clock("biscale", 0.89)


def _energy_above_idle_j(clock: int) -> float:
    latency = ph.decode_latency_s(TP8, 64, 64_000, clock)
    return _decode_energy_j(clock) - ph.idle_energy_j(TP8, latency)


def test_joulescale_decode_after_idle_gaps_runs_the_cheapest_fitting_clock_not_the_lowest() -> None:
    """With a fixed batch, energy is U-shaped in the clock; after idle gaps,
    finishing sooner only buys idle time, so energy above idle power is what to minimise."""
    policy = make_policy("joulescale", context(settings=PolicySettings(joulescale=JouleScaleSettings(decode_idle_window_s=2.0))))
    policy.decide(decode_obs(batch_size=0, context_tokens=0, now_s=9.0))
    decision = policy.decide(decode_obs())
    cheapest = min(TP8.supported_sm_clocks_mhz, key=_energy_above_idle_j)
    assert (decision.sm_clock_mhz, decision.reason) == (cheapest, R.ENERGY_OPTIMAL)
    assert cheapest > TP8.min_sm_clock_mhz
    assert _energy_above_idle_j(cheapest) < 0.95 * _energy_above_idle_j(TP8.min_sm_clock_mhz)
    later = policy.decide(decode_obs(now_s=12.0))
    assert later.sm_clock_mhz == TP8.min_sm_clock_mhz


@pytest.mark.parametrize("name", ["biscale", "joulescale"])
@pytest.mark.parametrize("pressure", [{"kv_cache_usage": 0.95}, {"preemptions_delta": 2}])
def test_kv_pressure_or_preemption_runs_decode_at_the_top_clock(
    name: str, pressure: dict[str, object]
) -> None:
    decision = make_policy(name, context()).decide(decode_obs(sm_clock_mhz=900, **pressure))  # type: ignore[arg-type]
    assert (decision.sm_clock_mhz, decision.reason, decision.urgent) == (1980, R.KV_PRESSURE, True)


@pytest.mark.parametrize("name", ["voltana", "biscale", "joulescale"])
def test_a_decode_batch_that_misses_even_at_the_top_clock_gets_it_urgently(name: str) -> None:
    decision = make_policy(name, context(slo=Slo(ttft_ms=600, tpot_ms=10))).decide(
        decode_obs(sm_clock_mhz=900)
    )
    assert (decision.sm_clock_mhz, decision.reason, decision.urgent) == (1980, R.SLO_AT_RISK, True)


def _tight() -> object:
    return context(slo=Slo(ttft_ms=600, tpot_ms=20))


def test_joulescale_spends_banked_slack_and_makes_late_requests_catch_up() -> None:
    def clock(decoding: object) -> int:
        return make_policy("joulescale", _tight()).decide(decode_obs(decoding=decoding)).sm_clock_mhz  # type: ignore[arg-type]

    fresh = clock(progress(64, 0, 0.0))
    ahead = clock(progress(64, 200, 0.015))
    late = clock(progress(64, 200, 0.0185))
    assert ahead < fresh < late


def test_joulescale_banks_slack_from_measured_iterations_in_the_metrics_only_view() -> None:
    small_bank = context(slo=Slo(ttft_ms=600, tpot_ms=20), settings=PolicySettings(decode=DecodeSettings(slack_bank_cap_tokens=0.5)))
    fresh = make_policy("joulescale", small_bank).decide(decode_obs())
    banked = make_policy("joulescale", small_bank)
    for i in range(20):
        decision = banked.decide(decode_obs(now_s=i * 0.02, iterations_delta=1, mean_iteration_s=0.012))
    assert decision.sm_clock_mhz < fresh.sm_clock_mhz
    assert decision.reason == R.SLACK_SPENT


def _true_decode_s(clock: int) -> float:
    return 1.15 * ph.decode_latency_s(TP8, 64, 64_000, clock)


def test_joulescale_learns_a_15_percent_slower_gpu_and_then_fits_the_budget() -> None:
    slo = context(slo=Slo(ttft_ms=600, tpot_ms=25))
    policy = make_policy("joulescale", slo)
    decision = policy.decide(decode_obs(now_s=0.0))
    for i in range(1, 51):
        clock = decision.sm_clock_mhz
        decision = policy.decide(
            decode_obs(
                now_s=i * 0.2, sm_clock_mhz=clock, iterations_delta=1, last_iteration_s=_true_decode_s(clock)
            )
        )
    assert decision.predicted_iteration_s == pytest.approx(_true_decode_s(decision.sm_clock_mhz), rel=0.02)
    assert _true_decode_s(decision.sm_clock_mhz) <= 0.0225
    biscale = make_policy("biscale", slo).decide(decode_obs())
    assert _true_decode_s(biscale.sm_clock_mhz) > 0.0225


@pytest.mark.parametrize("name", ["biscale", "joulescale"])
def test_a_mispredicted_prefill_iteration_sends_the_next_one_to_the_top_clock(name: str) -> None:
    policy = make_policy(name, context())
    # Start below every policy's choice, so the first decision is a real change of clock.
    first = policy.decide(prefill_obs(now_s=0.0, oldest_wait_s=0.0, sm_clock_mhz=990))
    clock = first.sm_clock_mhz
    assert clock < 1980
    second = policy.decide(prefill_obs(now_s=0.5, sm_clock_mhz=clock, oldest_wait_s=0.0, iterations_delta=1))
    assert second.predicted_iteration_s is not None
    slow = second.predicted_iteration_s * 1.5
    guarded = policy.decide(
        prefill_obs(
            now_s=2.0, sm_clock_mhz=clock, oldest_wait_s=0.0, iterations_delta=1, last_iteration_s=slow
        )
    )
    assert (guarded.sm_clock_mhz, guarded.reason, guarded.urgent) == (1980, R.MISPREDICTION_GUARD, True)


@pytest.mark.parametrize("name", ["biscale", "joulescale"])
def test_an_iteration_measured_before_the_clock_settled_does_not_trip_the_guard(name: str) -> None:
    policy = make_policy(name, context())
    clock = policy.decide(prefill_obs(now_s=0.0, oldest_wait_s=0.0, sm_clock_mhz=990)).sm_clock_mhz
    decision = policy.decide(
        prefill_obs(
            now_s=0.3, sm_clock_mhz=clock, oldest_wait_s=0.0, iterations_delta=1, last_iteration_s=1.0
        )
    )
    assert decision.reason != R.MISPREDICTION_GUARD


def test_an_empty_prefill_queue_keeps_the_current_clock_for_biscale() -> None:
    decision = make_policy("biscale", context()).decide(prefill_obs(waiting=0, running=0, sm_clock_mhz=1200))
    assert decision == ClockDecision(1200, R.IDLE)


def test_an_empty_prefill_queue_leaves_joulescale_idle_at_its_ready_clock() -> None:
    policy = make_policy("joulescale", context())
    first = policy.decide(prefill_obs(waiting=0, running=0, sm_clock_mhz=1200))
    again = policy.decide(prefill_obs(waiting=0, running=0, sm_clock_mhz=first.sm_clock_mhz, now_s=10.05))
    assert first.reason == again.reason == R.IDLE
    assert again.sm_clock_mhz == first.sm_clock_mhz


@pytest.mark.parametrize("name", ["biscale", "joulescale"])
def test_prefill_mpc_lowers_the_clock_with_slack_and_raises_it_without(name: str) -> None:
    relaxed = make_policy(name, context()).decide(prefill_obs(queue=queue([1000, 1000], [0.0, 0.0])))
    pressed = make_policy(name, context()).decide(prefill_obs(queue=queue([1000, 1000], [0.42, 0.4])))
    assert relaxed.sm_clock_mhz < pressed.sm_clock_mhz
    at_risk = make_policy(name, context()).decide(prefill_obs(queue=queue([1000], [0.6])))
    assert (at_risk.sm_clock_mhz, at_risk.reason) == (1980, R.SLO_AT_RISK)


def test_joulescale_prefill_never_spends_more_predicted_energy_than_biscale_on_one_batch() -> None:
    # Nothing in flight: with a step in flight JouleScale also guards a prompt arriving unseen
    # during it in the hook's view, which BiScale does not (test_joulescale_prefill.py).
    obs = prefill_obs(running=0, waiting=2, queue=queue([3000, 2000], [0.1, 0.0]))
    clocks = [make_policy(n, context()).decide(obs).sm_clock_mhz for n in ("biscale", "joulescale")]

    def net_energy_j(clock: int) -> float:
        latency = ph.prefill_latency_s(TP8, [3000, 2000], clock)
        return ph.iteration_energy_j(TP8, "prefill", latency, clock, 2) - ph.idle_energy_j(TP8, latency)

    assert net_energy_j(clocks[1]) <= net_energy_j(clocks[0])


def test_voltana_runs_the_top_clock_while_requests_wait() -> None:
    decision = make_policy("voltana", context()).decide(prefill_obs(waiting=2))
    assert (decision.sm_clock_mhz, decision.reason) == (1980, R.QUEUE_PRESSURE)


def test_voltana_picks_the_lowest_listed_clock_that_fits() -> None:
    policy = make_policy("voltana", context(settings=PolicySettings(voltana=VoltanaSettings(clocks_mhz=(1005, 1200, 1410, 1980)))))
    decision = policy.decide(decode_obs(batch_size=64, context_tokens=64_000))
    assert decision.sm_clock_mhz == 1005
    tight = make_policy(
        "voltana", context(slo=Slo(ttft_ms=600, tpot_ms=19), settings=PolicySettings(voltana=VoltanaSettings(clocks_mhz=(1005, 1410, 1980))))
    )
    assert tight.decide(decode_obs()).sm_clock_mhz == 1410


def test_voltana_prefill_budget_is_shortened_by_the_longest_wait() -> None:
    policy = make_policy("voltana", context())
    fresh = policy.decide(prefill_obs(waiting=0, running=4, context_tokens=6000, oldest_wait_s=0.0))
    late = policy.decide(prefill_obs(waiting=0, running=4, context_tokens=6000, oldest_wait_s=0.25))
    assert fresh.sm_clock_mhz < late.sm_clock_mhz


def test_voltana_drops_to_the_lowest_clock_after_five_idle_seconds() -> None:
    policy = make_policy("voltana", context())
    policy.decide(decode_obs(now_s=0.0))
    idle = Observation("decode", 3.0, 1395, 0, 0, 0.0, 0)
    assert policy.decide(idle).sm_clock_mhz == 1395
    later = Observation("decode", 5.5, 1395, 0, 0, 0.0, 0)
    assert policy.decide(later) == ClockDecision(TP8.min_sm_clock_mhz, R.IDLE)


def test_voltana_counts_ended_steps_as_work_though_step_end_gauges_show_none() -> None:
    policy = make_policy("voltana", context())
    policy.decide(prefill_obs(now_s=0.0))
    for i in range(1, 20):  # a prefill instance busy for 9.5 s, seen through gauges published at step ends
        ended = prefill_obs(waiting=0, running=0, oldest_wait_s=None, now_s=i * 0.5, sm_clock_mhz=1395,
                            iterations_delta=1, prompt_tokens_delta=2000, generation_tokens_delta=1)
        assert policy.decide(ended).sm_clock_mhz == 1395
    quiet = prefill_obs(waiting=0, running=0, oldest_wait_s=None, now_s=15.0, sm_clock_mhz=1395)
    assert policy.decide(quiet) == ClockDecision(TP8.min_sm_clock_mhz, R.IDLE)


def test_policies_are_deterministic_for_the_same_observations() -> None:
    observations = [
        decode_obs(now_s=i * 0.03, batch_size=20 + i, iterations_delta=1, mean_iteration_s=0.02)
        for i in range(30)
    ]
    for name in policy_names():
        first, second = make_policy(name, _tight()), make_policy(name, _tight())  # type: ignore[arg-type]
        assert [first.decide(o) for o in observations] == [second.decide(o) for o in observations]


def test_joulescale_sees_idle_gaps_in_the_metrics_only_view_from_a_low_busy_share() -> None:
    policy = make_policy("joulescale", context(settings=PolicySettings(joulescale=JouleScaleSettings(decode_idle_window_s=2.0))))
    busy = policy.decide(decode_obs(iterations_delta=40, mean_iteration_s=0.025, interval_s=1.0))
    assert (busy.sm_clock_mhz, busy.reason) == (TP8.min_sm_clock_mhz, R.SLO_FIT)
    gappy = policy.decide(decode_obs(now_s=11.0, iterations_delta=10, mean_iteration_s=0.025, interval_s=1.0))
    assert gappy.reason == R.ENERGY_OPTIMAL
