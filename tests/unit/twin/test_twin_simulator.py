from __future__ import annotations

import pytest

from joulescale.twin.simulator import simulate
from joulescale.twin.traces import TraceRequest, load_trace, scaled_window, synthetic_trace

from .helpers import FixedClock, PassThrough, fixed_control, profile, small_cluster


def _conv_window(scale: float = 2.0, duration_s: float = 40.0) -> list[TraceRequest]:
    return scaled_window(load_trace("azure-conv"), scale, duration_s)


def test_same_inputs_give_identical_runs() -> None:
    window = _conv_window()
    a = simulate(window, small_cluster(), fixed_control(1500, 900))
    b = simulate(window, small_cluster(), fixed_control(1500, 900))
    assert [(r.first_token_s, r.finish_s) for r in a.requests] == [
        (r.first_token_s, r.finish_s) for r in b.requests
    ]
    assert [g.busy_energy_j for g in a.gpus] == [g.busy_energy_j for g in b.gpus]


def test_every_request_finishes_once_and_tokens_add_up() -> None:
    window = _conv_window()
    result = simulate(window, small_cluster(decode_max_running=64), fixed_control(1980, 1980))
    assert all(r.finish_s >= r.first_token_s >= r.prefill_done_s >= r.arrival_s for r in result.requests)
    assert sum(p.counters.prompt_tokens for p in result.prefill) == sum(r.prompt_tokens for r in window)
    decoded = sum(d.counters.generation_tokens for d in result.decode)
    assert decoded == sum(r.output_tokens - 1 for r in window)
    assert sum(len(log) for log in (p.batch_log for p in result.prefill)) == sum(
        p.counters.iterations for p in result.prefill
    )


def test_a_full_kv_cache_preempts_and_still_conserves_tokens() -> None:
    tiny = profile().model_copy(update={"kv_capacity_tokens": 30_000})
    cluster = small_cluster(1, 1).__class__(tiny, 1, 1)
    window = _conv_window(scale=2.0, duration_s=30.0)
    result = simulate(window, cluster, fixed_control(1980, 1980))
    assert sum(d.recorder.preemptions for d in result.decode) > 0
    assert all(r.finish_s > 0 for r in result.requests)
    assert sum(d.counters.generation_tokens for d in result.decode) == sum(
        r.output_tokens - 1 for r in window
    )
    recomputed = sum(entry[2] for d in result.decode for entry in d.iteration_log)
    assert recomputed > 0


def test_prefill_steps_never_pass_the_token_budget_and_long_prompts_are_chunked() -> None:
    window = _conv_window(scale=4.0, duration_s=20.0)
    assert max(r.prompt_tokens for r in window) > 4096  # some conversation prompts exceed the budget
    result = simulate(window, small_cluster(prefill_token_budget=4096), fixed_control(1980, 1980))
    sizes = [tokens for p in result.prefill for tokens, _, _ in p.batch_log]
    assert max(sizes) == 4096  # filled to the budget, never past it: long prompts are split
    assert any(1 < s < 4096 for s in sizes)
    assert sum(sizes) == sum(r.prompt_tokens for r in window)
    # chunks of one prompt add up to its whole attention term: sum of S2 == sum of squared prompts
    assert sum(s2 for p in result.prefill for _, s2, _ in p.batch_log) == sum(r.prompt_tokens**2 for r in window)


def test_lower_static_clock_stretches_latency_and_lowers_decode_power() -> None:
    window = _conv_window()
    fast = simulate(window, small_cluster(), fixed_control(1980, 1980))
    slow = simulate(window, small_cluster(), fixed_control(1980, 600))
    tpot_fast = sorted(r.tpot_s for r in fast.requests)[len(window) // 2]
    tpot_slow = sorted(r.tpot_s for r in slow.requests)[len(window) // 2]
    assert tpot_slow > tpot_fast
    fast_power = fast.decode[0].gpu.busy_energy_j / fast.decode[0].gpu.busy_s
    slow_power = slow.decode[0].gpu.busy_energy_j / slow.decode[0].gpu.busy_s
    assert slow_power < fast_power


def test_a_policy_that_does_not_observe_decides_once_and_its_clock_holds() -> None:
    window = _conv_window(duration_s=10.0)
    policies: list[FixedClock] = []

    def control(phase: str, index: int):  # type: ignore[no-untyped-def]
        from joulescale.twin.cluster import InstanceControl

        policy = FixedClock(1200)
        policies.append(policy)
        return InstanceControl(policy, PassThrough(), observes=False)

    result = simulate(window, small_cluster(), control)
    assert all(len(p.seen) == 1 for p in policies)
    assert all(set(g.time_at_clock_s) <= {1980, 1200} for g in result.gpus)
    assert all(g.clock_mhz == 1200 for g in result.gpus)


def test_metrics_view_hides_rich_fields_and_rich_view_shows_the_queue() -> None:
    window = _conv_window(duration_s=10.0)
    policies: list[FixedClock] = []

    def control(phase: str, index: int):  # type: ignore[no-untyped-def]
        from joulescale.twin.cluster import InstanceControl

        policy = FixedClock(1980)
        policies.append(policy)
        return InstanceControl(policy, PassThrough())

    simulate(window, small_cluster(view="metrics"), control)
    seen = [o for p in policies for o in p.seen]
    assert seen
    assert all(o.queue is None and o.decoding is None for o in seen)
    assert any(o.iterations_delta > 0 and o.mean_iteration_s is not None for o in seen)
    policies.clear()
    simulate(window, small_cluster(view="rich"), control)
    rich = [o for p in policies for o in p.seen]
    assert any(o.queue for o in rich if o.phase == "prefill")
    assert any(o.decoding for o in rich if o.phase == "decode")


def test_metrics_view_observes_with_the_scrape_delay() -> None:
    window = synthetic_trace(5.0, 5.0, 200, 20, seed=1).requests
    policies: list[FixedClock] = []

    def control(phase: str, index: int):  # type: ignore[no-untyped-def]
        from joulescale.twin.cluster import InstanceControl

        policy = FixedClock(1980)
        policies.append(policy)
        return InstanceControl(policy, PassThrough())

    simulate(window, small_cluster(1, 1, scrape_period_s=0.1, scrape_delay_s=0.03), control)
    start, *scrapes = policies[0].seen
    assert start.now_s == 0.0  # the decision taken before traffic
    assert scrapes[0].now_s == pytest.approx(0.03)
    assert scrapes[1].now_s - scrapes[0].now_s == pytest.approx(0.1)
    assert all(o.interval_s == pytest.approx(0.1) for o in scrapes[1:])


def test_a_power_cap_slows_prefill_at_the_top_clock_but_not_decode() -> None:
    window = _conv_window(duration_s=20.0)
    capped = profile().model_copy(update={"power_limit_watts": 490.0})
    free = simulate(window, small_cluster(), fixed_control(1980, 1980))
    cap = simulate(window, small_cluster().__class__(capped, 2, 1), fixed_control(1980, 1980))
    assert sum(p.gpu.busy_s for p in cap.prefill) > 1.2 * sum(p.gpu.busy_s for p in free.prefill)
    assert max(p.gpu.busy_energy_j / p.gpu.busy_s for p in cap.prefill) <= 4 * 490.0 + 1e-6
    assert [len(d.iteration_log) for d in cap.decode] == pytest.approx([len(d.iteration_log) for d in free.decode],
                                                                        rel=0.05)
