from __future__ import annotations

import pytest

from joulescale.profiles import physics
from joulescale.twin.decode import DecodeInstance
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.kv_transfer import KvLink, kv_medium
from joulescale.twin.prefill import PrefillInstance
from joulescale.twin.request import SimRequest
from joulescale.twin.routing import CapacityWeighted, EcoRoute

from .helpers import profile


def _gpu(settle_s: float = 0.05) -> SimGpuGroup:
    return SimGpuGroup(profile(), "prefill", 1980, settle_s)


def test_a_new_clock_takes_effect_only_after_the_settle_time() -> None:
    gpu = _gpu()
    gpu.request(0.0, 990)
    assert gpu.clock_mhz == 1980
    assert gpu.target_mhz == 990
    gpu.settle(0.049)
    assert gpu.clock_mhz == 1980
    gpu.settle(0.05)
    assert gpu.clock_mhz == 990
    assert gpu.clock_changes == 1


def test_an_iteration_spanning_a_clock_change_runs_part_at_each_clock() -> None:
    gpu = _gpu()
    p = profile()
    fast = physics.prefill_latency_from_sums_s(p, 4000, 4000**2, 1980)
    slow = physics.prefill_latency_from_sums_s(p, 4000, 4000**2, 990)
    gpu.request(0.0, 990)
    duration = gpu.run(0.0, lambda mhz: physics.prefill_latency_from_sums_s(p, 4000, 4000**2, mhz), 1)
    assert fast < duration < slow
    head = 0.05
    assert duration == pytest.approx(head + (1 - head / fast) * slow)
    expected_j = p.tensor_parallel_size * (
        physics.busy_power_watts(p, "prefill", 1980, 1) * head
        + physics.busy_power_watts(p, "prefill", 990, 1) * (duration - head)
    )
    assert gpu.busy_energy_j == pytest.approx(expected_j)
    assert gpu.idle_energy_j(10.0) == pytest.approx(physics.idle_energy_j(p, 10.0 - duration))


def test_requesting_the_current_clock_changes_nothing() -> None:
    gpu = _gpu()
    gpu.request(0.0, 1980)
    assert gpu.clock_changes == 0
    assert gpu.pending_mhz is None


def test_kv_transfers_queue_on_one_link() -> None:
    medium = kv_medium("infiniband")
    link = KvLink(medium, profile().kv_bytes_per_token)
    one = medium.transfer_s(1000, profile().kv_bytes_per_token)
    assert link.send(0.0, 1000) == pytest.approx(one)
    assert link.send(0.0, 1000) == pytest.approx(2 * one)
    assert kv_medium("nvme").transfer_s(1000, 327680) > kv_medium("nvlink").transfer_s(1000, 327680)
    with pytest.raises(ValueError, match="unknown KV transfer medium"):
        kv_medium("pigeon")


def _decode(index: int, running: int, clock_mhz: int) -> DecodeInstance:
    inst = DecodeInstance(index, SimGpuGroup(profile(), "decode", clock_mhz, 0.05), 400_000, 512, 0.01)
    for k in range(running):
        request = SimRequest(index * 1000 + k, 0.0, 10, 50)
        inst.enqueue(request, 0.0)
    inst.start_step(0.0)
    return inst


def test_capacity_weighted_picks_the_least_loaded_and_rotates_ties() -> None:
    router = CapacityWeighted()
    busy = [_decode(0, 5, 1980), _decode(1, 2, 1980), _decode(2, 2, 1980)]
    assert router.pick_decode(busy) == 1
    assert router.pick_decode(busy) == 2  # the tie now rotates


def test_ecoroute_prefers_the_lowest_clock_below_one_tile_then_avoids_crossing_a_tile() -> None:
    router = EcoRoute()
    assert router.pick_decode([_decode(0, 3, 1980), _decode(1, 10, 900)]) == 1
    # one instance past a tile: fill the fullest tile without crossing a multiple of 128
    assert router.pick_decode([_decode(0, 130, 900), _decode(1, 127, 900)]) == 0
    assert router.pick_decode([_decode(0, 255, 900), _decode(1, 140, 900)]) == 1


def test_engine_counters_count_a_step_when_it_ends_not_when_it_starts() -> None:
    prefill = PrefillInstance(0, _gpu(), 8192)
    prefill.enqueue(SimRequest(1, 0.0, 2000, 10), 0.0)
    assert prefill.start_step(0.0)
    duration_s = prefill.run_step(0.0)
    assert (prefill.counters.iterations, prefill.counters.last_iteration_s) == (0, None)
    prefill.finish_step(duration_s)
    assert (prefill.counters.iterations, prefill.counters.last_iteration_s) == (1, duration_s)
    decode = DecodeInstance(0, SimGpuGroup(profile(), "decode", 1980, 0.05), 400_000, 512, 0.01)
    decode.enqueue(SimRequest(2, 0.0, 100, 50), 0.0)
    assert decode.start_step(0.0)
    step_s = decode.run_step(0.0)
    assert decode.counters.iterations == 0
    decode.finish_step(step_s)
    assert (decode.counters.iterations, decode.counters.busy_s) == (1, step_s)
