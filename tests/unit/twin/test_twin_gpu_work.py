"""The simulated GPU conserves work under any sequence of clock requests (gpu.py), and the KV
link and routers do what their docstrings say, checked through whole runs where they can be."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.profiles import physics
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.kv_transfer import KvLink, kv_media, kv_medium
from joulescale.twin.routing import ROUTER_NAMES, Routers
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import TraceRequest

from .helpers import fixed_control, profile, small_cluster

CLOCKS = profile().supported_sm_clocks_mhz
TOP = profile().max_sm_clock_mhz


def _latency_s(mhz: int) -> float:
    return physics.prefill_latency_from_sums_s(profile(), 6000, 6000**2, mhz)


@settings(max_examples=80, deadline=None)
@given(start=st.sampled_from(CLOCKS), settle_s=st.floats(0.0, 0.3),
       requests=st.lists(st.tuples(st.floats(0.0, 1.0), st.sampled_from(CLOCKS)), max_size=8))
def test_any_sequence_of_clock_requests_runs_the_whole_iteration_once(
        start: int, settle_s: float, requests: list[tuple[float, int]]) -> None:
    """Each booked slice at clock f does slice / t(f) of the work; whatever the requests, the
    slices add up to exactly one iteration, end where the iteration ends, and the energy is
    power x time per slice."""
    p = profile()
    gpu = SimGpuGroup(p, "prefill", start, settle_s)
    planned_s = gpu.run(0.0, _latency_s, 1)
    assert planned_s == pytest.approx(_latency_s(start))
    now_s = 0.0
    for fraction, mhz in requests:
        now_s += fraction * max(0.0, gpu.end_s - now_s)  # somewhere inside what is left
        if now_s >= gpu.end_s:
            break
        gpu.request(now_s, mhz)
    gpu.settle(gpu.end_s)
    assert all(seconds >= -1e-12 for seconds in gpu.time_at_clock_s.values())  # unbooking never overshoots
    work = sum(seconds / _latency_s(mhz) for mhz, seconds in gpu.time_at_clock_s.items())
    assert work == pytest.approx(1.0, rel=1e-9)
    assert gpu.busy_s == pytest.approx(gpu.end_s, rel=1e-9)
    assert gpu.iteration_s == pytest.approx(gpu.end_s, rel=1e-9)
    fastest, slowest = min(map(_latency_s, CLOCKS)), max(map(_latency_s, CLOCKS))
    assert fastest * (1 - 1e-9) <= gpu.end_s <= slowest * (1 + 1e-9)
    expected_j = sum(p.tensor_parallel_size * physics.busy_power_watts(p, "prefill", mhz, 1) * seconds
                     for mhz, seconds in gpu.time_at_clock_s.items())
    assert gpu.busy_energy_j == pytest.approx(expected_j, rel=1e-9)
    times = [t for t, _ in gpu.clock_trace]
    assert times == sorted(times)  # the trace of applied clocks runs forward


def test_a_clock_asked_while_idle_applies_after_the_settle_and_counts_once() -> None:
    gpu = SimGpuGroup(profile(), "decode", TOP, 0.02)
    gpu.request(1.0, 1200)
    gpu.request(1.005, 1200)  # the same target again: no change
    assert gpu.clock_changes == 1
    gpu.settle(1.019)
    assert gpu.clock_mhz == TOP
    assert gpu.target_mhz == 1200
    gpu.settle(1.02)
    assert gpu.clock_mhz == 1200
    assert gpu.clock_trace == [(0.0, TOP), (1.02, 1200)]
    assert gpu.busy_s == 0.0
    assert gpu.busy_energy_j == 0.0
    p = profile()
    assert gpu.idle_energy_j(10.0) == pytest.approx(p.tensor_parallel_size * p.idle_power_watts * 10.0)


def test_a_kv_transfer_takes_the_overhead_plus_the_bytes_over_the_bandwidth() -> None:
    bytes_per_token = profile().kv_bytes_per_token
    for medium in kv_media().values():
        assert medium.bandwidth_gb_per_s > 0
        assert medium.overhead_ms >= 0
        expected = medium.overhead_ms / 1000 + 1000 * bytes_per_token / (medium.bandwidth_gb_per_s * 1e9)
        assert medium.transfer_s(1000, bytes_per_token) == pytest.approx(expected)
    infiniband = kv_medium("infiniband")
    assert infiniband.transfer_s(1000, 327_680) == pytest.approx(0.001 + 327.68e6 / 50e9)
    nvlink, nvme = kv_medium("nvlink"), kv_medium("nvme")
    assert nvlink.transfer_s(4096, bytes_per_token) < infiniband.transfer_s(4096, bytes_per_token) < \
        nvme.transfer_s(4096, bytes_per_token)
    with pytest.raises(ValueError, match="unknown KV transfer medium 'carrier-pigeon'; known: "):
        kv_medium("carrier-pigeon")


def test_a_link_sends_one_transfer_at_a_time_and_an_idle_link_starts_at_once() -> None:
    medium = kv_medium("ethernet-100g")
    link = KvLink(medium, 1000)
    one = medium.transfer_s(10_000, 1000)
    assert link.send(0.0, 10_000) == pytest.approx(one)
    assert link.send(0.0, 10_000) == pytest.approx(2 * one)  # queued behind the first
    assert link.send(10.0, 10_000) == pytest.approx(10.0 + one)  # idle by then


def test_the_kv_medium_shows_in_the_time_to_first_token() -> None:
    """A single request: TTFT = prefill latency + the transfer of its prompt's KV cache."""
    p = profile()
    for name in ("nvlink", "nvme"):
        run = simulate([TraceRequest(1.0, 3000, 2)], small_cluster(1, 1, kv_medium=name), fixed_control(TOP, TOP))
        expected = physics.prefill_latency_s(p, [3000], TOP) + kv_medium(name).transfer_s(3000, p.kv_bytes_per_token)
        assert run.requests[0].ttft_s == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("router", ["round-robin", "capacity-weighted"])
def test_requests_spread_evenly_over_idle_prefill_instances(router: str) -> None:
    """Requests far apart find every instance idle: both routers rotate through them, which the
    busy time of each instance shows (the sum of its requests' prefill latencies)."""
    prompts = [1000, 2000, 3000, 4000, 5000, 6000]
    window = [TraceRequest(1.0 + 2.0 * k, prompt, 2) for k, prompt in enumerate(prompts)]
    run = simulate(window, small_cluster(3, 1, prefill_router=router), fixed_control(TOP, TOP))
    p = profile()
    busy = [inst.gpu.busy_s for inst in run.prefill]
    expected = sorted(sum(physics.prefill_latency_s(p, [prompts[k]], TOP) for k in range(j, len(prompts), 3))
                      for j in range(3))
    assert sorted(busy) == pytest.approx(expected, rel=1e-9)


def test_routers_are_known_by_name_and_ecoroute_routes_decode_only() -> None:
    for name in ROUTER_NAMES:
        if name != "ecoroute":
            Routers(name, name)
    Routers("round-robin", "ecoroute")
    with pytest.raises(ValueError, match="ecoroute is a decode router"):
        Routers("ecoroute", "round-robin")
    with pytest.raises(ValueError, match="unknown router 'random'"):
        Routers("capacity-weighted", "random")
    with pytest.raises(ValueError, match="unknown router"):
        simulate([TraceRequest(0.0, 10, 2)], small_cluster(1, 1, prefill_router="nearest"), fixed_control(TOP, TOP))


def test_each_prefill_instance_has_its_own_kv_link() -> None:
    """Two prompts prefilled side by side on two instances send their KV caches in parallel."""
    p = profile()
    window = [TraceRequest(1.0, 4000, 2), TraceRequest(1.0, 4000, 2)]
    run = simulate(window, small_cluster(2, 1), fixed_control(TOP, TOP))
    a, b = run.requests
    assert a.prefill_done_s == b.prefill_done_s  # one each, at once
    assert a.first_token_s == b.first_token_s == pytest.approx(
        a.prefill_done_s + kv_medium("infiniband").transfer_s(4000, p.kv_bytes_per_token))
