"""Replica counts that change during a twin run: start-up, drain, GPUs given back, base clocks."""

from __future__ import annotations

import pytest

from joulescale.control.controller import Role
from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile
from joulescale.twin.cluster import InstanceControl
from joulescale.twin.elastic import (
    ElasticResult,
    ObservedTraffic,
    Placement,
    ScheduledScaler,
    Target,
    held_energy,
    simulate_elastic,
)
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import TraceRequest, synthetic_trace
from tests.unit.twin.helpers import FixedClock, PassThrough, fixed_control, profile, small_cluster

TOP = profile().max_sm_clock_mhz


def _control(role: Role, profile: GpuProfile, base_mhz: int | None) -> InstanceControl:
    return InstanceControl(FixedClock(TOP if base_mhz is None else base_mhz), PassThrough())


def _steady(rate: float = 2.0, duration_s: float = 60.0) -> list[TraceRequest]:
    return list(synthetic_trace(rate, duration_s, 1024, 128, seed=3).requests)


def test_without_changes_an_elastic_run_is_the_plain_run() -> None:
    requests = _steady(duration_s=30.0)
    cluster = small_cluster(2, 1)
    plain = simulate(requests, cluster, fixed_control(TOP, TOP))
    elastic = simulate_elastic(requests, cluster, _control, ScheduledScaler(()), startup_s=30.0)
    assert [r.finish_s for r in elastic.requests] == [r.finish_s for r in plain.requests]
    held, flat = held_energy(elastic, plain.end_s, 12), held_energy(plain, plain.end_s, 12)
    assert held.prefill.total_j == pytest.approx(flat.prefill.total_j)
    assert held.decode.total_j == pytest.approx(flat.decode.total_j)
    assert held.gpu_seconds_given_back == pytest.approx(0.0)


def test_a_starting_replica_draws_idle_power_and_serves_nothing_until_ready() -> None:
    requests = _steady(rate=3.0, duration_s=60.0)
    startup_s = 20.0
    scaler = ScheduledScaler([(10.0, Target(prefill=2, decode=1))])
    result = simulate_elastic(requests, small_cluster(1, 1), _control, scaler, startup_s, record_busy=True)
    added = result.tenures[[t.phase for t in result.tenures].index("prefill") + 1]
    assert (added.phase, added.index, added.held_s, added.ready_s) == ("prefill", 1, 10.0, 10.0 + startup_s)
    log = result.prefill[1].gpu.busy_log
    assert log, "the new replica serves once ready"
    assert min(start for start, *_ in log) >= added.ready_s
    # Before it was ready every request went to replica 0; after, both share the work.
    assert all(r.prefill_start_s >= 0 for r in result.requests)
    horizon = result.end_s
    energy = held_energy(result, horizon, gpu_budget=8)
    one_idle_w = physics.idle_energy_j(profile(), 1.0)
    expected_idle = sum(physics.idle_energy_j(profile(), (horizon - held) - inst.gpu.busy_s)
                        for inst, held in ((result.prefill[0], 0.0), (result.prefill[1], 10.0)))
    assert energy.prefill.idle_j == pytest.approx(expected_idle)
    assert energy.prefill.idle_j > one_idle_w * (startup_s - 1.0)  # the start-up's idle draw is in
    assert energy.gpu_seconds_held == pytest.approx(4 * horizon * 2 + 4 * (horizon - 10.0))


def test_a_drained_replica_finishes_what_it_holds_takes_nothing_new_and_gives_its_gpus_back() -> None:
    requests = _steady(rate=4.0, duration_s=60.0)
    scaler = ScheduledScaler([(20.0, Target(prefill=2, decode=1))])
    result = simulate_elastic(requests, small_cluster(2, 2), _control, scaler, startup_s=30.0)
    drained = [t for t in result.tenures if t.drain_s is not None]
    assert len(drained) == 1
    assert drained[0].phase == "decode"
    gone = drained[0]
    assert gone.released_s is not None
    assert gone.released_s >= gone.drain_s
    served_there = [r for r in result.requests if r.decode_instance == gone.index]
    assert served_there, "it held requests when the drain began"
    assert all(r.finish_s >= 0 for r in result.requests), "every request finished"
    assert max(r.finish_s for r in served_there) <= gone.released_s
    # Requests that left prefill after the drain began never go to the drained replica.
    late = [r for r in result.requests if r.prefill_done_s > gone.drain_s]  # type: ignore[operator]
    assert late
    assert all(r.decode_instance != gone.index for r in late)
    energy = held_energy(result, result.end_s, gpu_budget=16)
    given_back = 16 * result.end_s - energy.gpu_seconds_held
    assert energy.gpu_seconds_given_back == pytest.approx(given_back)
    assert energy.gpu_seconds_given_back >= 4 * (result.end_s - gone.released_s)
    # The given-back GPUs' idle energy is reported, not counted in the service's energy.
    assert energy.given_back_idle_j == pytest.approx(physics.idle_energy_j(profile(), 1.0) / 4 * given_back)
    kept = simulate_elastic(requests, small_cluster(2, 2), _control, ScheduledScaler(()), startup_s=30.0)
    kept_energy = held_energy(kept, result.end_s, gpu_budget=16)
    assert energy.decode.idle_j < kept_energy.decode.idle_j


def test_a_replica_removed_while_starting_is_given_back_at_once_and_never_serves() -> None:
    requests = _steady(rate=2.0, duration_s=40.0)
    scaler = ScheduledScaler([(5.0, Target(prefill=1, decode=2)), (10.0, Target(prefill=1, decode=1))])
    result = simulate_elastic(requests, small_cluster(1, 1), _control, scaler, startup_s=30.0)
    added = next(t for t in result.tenures if t.phase == "decode" and t.index == 1)
    assert (added.held_s, added.released_s) == (5.0, 10.0)
    assert result.decode[1].gpu.busy_s == 0.0
    assert all(r.decode_instance == 0 for r in result.requests)
    assert [when for when, _ in result.plans] == [5.0, 10.0]


def test_a_planned_base_clock_reaches_the_running_replicas_policy() -> None:
    low = profile().supported_sm_clocks_mhz[len(profile().supported_sm_clocks_mhz) // 2]
    requests = _steady(rate=1.0, duration_s=30.0)
    scaler = ScheduledScaler([(10.0, Target(prefill=1, decode=1, decode_base_mhz=low))])
    result = simulate_elastic(requests, small_cluster(1, 1), _control, scaler, startup_s=30.0)
    trace = result.decode[0].gpu.clock_trace
    assert trace[0] == (0.0, TOP)
    assert any(abs(at - 10.0 - result.decode[0].gpu.settle_s) < 1e-9 and mhz == low for at, mhz in trace)
    assert result.prefill[0].gpu.clock_mhz == TOP


class _Recording:
    """A scaler that records what it was shown."""

    interval_s = 5.0

    def __init__(self) -> None:
        self.seen: list[tuple[float, int, int, Placement]] = []

    def target(self, traffic: ObservedTraffic, placement: Placement) -> Target | None:
        arrivals = traffic.arrivals(traffic.now_s - self.interval_s)
        self.seen.append((traffic.now_s, len(arrivals), len(traffic.output_lengths(traffic.now_s - 5.0)), placement))
        assert all(t <= traffic.now_s for t, _ in arrivals), "no request from the future"
        return Target(prefill=2, decode=1) if traffic.now_s >= 10.0 else None


def test_the_scaler_sees_only_what_happened_so_far_at_its_interval() -> None:
    requests = _steady(rate=2.0, duration_s=30.0)
    scaler = _Recording()
    result: ElasticResult = simulate_elastic(requests, small_cluster(1, 1), _control, scaler, startup_s=7.0)
    times = [now for now, *_ in scaler.seen]
    assert times[:4] == [0.0, 5.0, 10.0, 15.0]
    arrived = {now: n for now, n, _, _ in scaler.seen}
    assert arrived[5.0] == sum(1 for r in requests if 0.0 < r.arrival_s <= 5.0)
    placements = {now: p for now, _, _, p in scaler.seen}
    assert placements[15.0].starting["prefill"] == 1
    assert placements[15.0].serving["prefill"] == 1
    assert placements[20.0].serving["prefill"] == 2
    assert placements[20.0].active("prefill") == 2
    assert result.plans == [(10.0, Target(prefill=2, decode=1))]


def test_a_new_tp_degree_serves_before_the_old_replicas_drain() -> None:
    requests = _steady(rate=2.0, duration_s=40.0)
    scaler = ScheduledScaler([(5.0, Target(prefill=1, decode=1, prefill_profile="h100-sxm-llama-70b-tp8"))])
    result = simulate_elastic(requests, small_cluster(1, 1), _control, scaler, startup_s=10.0, record_busy=True)
    old, new = (t for t in result.tenures if t.phase == "prefill")
    assert (new.profile, new.gpus, new.held_s, new.ready_s) == ("h100-sxm-llama-70b-tp8", 8, 5.0, 15.0)
    assert old.drain_s == 15.0, "the old replica serves until its successor is ready"
    assert result.prefill[1].gpu.profile.tensor_parallel_size == 8
    assert old.released_s is not None
    assert old.released_s < 16.0, "it held only what it had queued"
    old_log, new_log = result.prefill[0].gpu.busy_log, result.prefill[1].gpu.busy_log
    assert old_log
    assert new_log
    assert max(start for start, *_ in old_log) < old.released_s
    assert min(start for start, *_ in new_log) >= 15.0


def _held_at(result: ElasticResult, at_s: float) -> int:
    return sum(t.gpus for t in result.tenures
               if t.held_s <= at_s and (t.released_s is None or t.released_s > at_s))


def test_under_a_gpu_budget_a_replica_that_does_not_fit_waits_without_gpus() -> None:
    requests = _steady(rate=2.0, duration_s=40.0)
    seen: list[Placement] = []

    class Grow:
        interval_s = 5.0

        def target(self, traffic: ObservedTraffic, placement: Placement) -> Target | None:
            seen.append(placement)
            return Target(prefill=3, decode=1) if traffic.now_s >= 5.0 else None

    result = simulate_elastic(requests, small_cluster(1, 1), _control, Grow(), startup_s=10.0, gpu_budget=12)
    prefill = [t for t in result.tenures if t.phase == "prefill"]
    assert len(prefill) == 2, "only one more TP4 replica fits in 12 GPUs"
    assert max(_held_at(result, t.held_s) for t in result.tenures) <= 12
    assert seen[-1].starting["prefill"] == 1, "the third is pending: the operator sees it as not yet serving"
    assert seen[-1].serving["prefill"] == 2


def test_a_tp_change_under_a_full_budget_makes_room_without_a_gap_in_service() -> None:
    requests = _steady(rate=3.0, duration_s=80.0)
    scaler = ScheduledScaler([(5.0, Target(prefill=5, decode=1, prefill_profile="h100-sxm-llama-70b-tp2"))])
    result = simulate_elastic(requests, small_cluster(3, 1), _control, scaler, startup_s=10.0, gpu_budget=16)
    instants = sorted({t.held_s for t in result.tenures} | {t.released_s for t in result.tenures
                                                            if t.released_s is not None})
    assert max(_held_at(result, at) for at in instants) <= 16
    prefill = [t for t in result.tenures if t.phase == "prefill"]
    new = [t for t in prefill if t.profile == "h100-sxm-llama-70b-tp2"]
    old = [t for t in prefill if t.profile != "h100-sxm-llama-70b-tp2"]
    assert len(new) == 5
    assert all(t.released_s is None for t in new)
    assert all(t.released_s is not None for t in old)
    # Some prefill replica serves at every instant: the last TP4 one left after a TP2 one was ready.
    last_old = max(t.drain_s for t in old if t.drain_s is not None)
    assert last_old >= min(t.ready_s for t in new)
    assert all(r.finish_s >= 0 for r in result.requests)
