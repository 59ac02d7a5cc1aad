"""Invariants of any run, whatever the engine model: each request's timeline is ordered and no
phase beats the physics; a power cap caps the average busy power; tokens are conserved."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from joulescale.control.policy import Slo
from joulescale.profiles import physics
from joulescale.twin.cluster import ClusterConfig
from joulescale.twin.kv_transfer import kv_medium
from joulescale.twin.metrics import summarise
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import TraceRequest

from .helpers import alternating_control, fixed_control, profile

SLO = Slo(600.0, 100.0, 99)
TOP = profile().max_sm_clock_mhz
_REQUESTS = st.lists(st.tuples(st.floats(0.0, 3.0), st.integers(1, 12_000), st.integers(1, 120)), min_size=1,
                     max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_REQUESTS, kv_tokens=st.sampled_from((20_000, 60_000, None)), budget=st.sampled_from((2048, 8192)),
       prefill=st.integers(1, 2), decode=st.integers(1, 2), alternating=st.booleans(),
       medium=st.sampled_from(("nvlink", "ethernet-100g")))
def test_every_request_runs_its_phases_in_order_and_no_faster_than_the_physics(
        rows: list[tuple[float, int, int]], kv_tokens: int | None, budget: int, prefill: int, decode: int,
        alternating: bool, medium: str) -> None:
    """Also with a KV cache small enough to preempt, with chunk-sized token budgets and with clocks
    changing inside iterations."""
    p = profile() if kv_tokens is None else profile().model_copy(update={"kv_capacity_tokens": kv_tokens})
    window = [TraceRequest(t, prompt, output) for t, prompt, output in sorted(rows)
              if prompt + output <= p.kv_capacity_tokens]
    if not window:
        return
    cluster = ClusterConfig(p, prefill, decode, prefill_token_budget=budget, kv_medium=medium)
    control = alternating_control(705, TOP) if alternating else fixed_control(TOP, TOP)
    run = simulate(window, cluster, control)
    link = kv_medium(medium)
    for request in run.requests:
        assert request.arrival_s <= request.prefill_done_s <= request.first_token_s <= request.finish_s
        # the KV cache crosses the link after prefill, and a queue on the link only delays it
        transfer_s = link.transfer_s(request.prompt_tokens, p.kv_bytes_per_token)
        assert request.first_token_s - request.prefill_done_s >= transfer_s * (1 - 1e-9)
        # each generated token takes at least one decode step of one sequence at the fastest clock
        step_s = physics.decode_latency_s(p, 1, request.prompt_tokens, TOP)
        assert request.finish_s - request.first_token_s >= (request.output_tokens - 1) * step_s * (1 - 1e-9)
    assert run.end_s == pytest.approx(max(max(r.finish_s for r in run.requests), window[-1].arrival_s))
    summary = summarise(run, SLO)
    assert summary.finished == summary.requests == len(window)
    assert summary.output_tokens == sum(r.output_tokens for r in window)
    assert summary.preemptions == sum(r.preemptions for r in run.requests)
    for gpu in run.gpus:
        assert 0.0 <= gpu.busy_s <= run.end_s * (1 + 1e-9)


@settings(max_examples=15, deadline=None)
@given(fraction=st.floats(0.01, 1.0))
def test_a_power_cap_caps_the_average_busy_power_of_every_gpu(fraction: float) -> None:
    """Any cap the twin accepts: above its phases' floors (at a floor, no clock is left: refused,
    test_twin_limits_settings) up to the profile's own limit."""
    base = profile()
    needed = max(base.idle_power_watts, base.prefill.power.floor_watts, base.decode.power.floor_watts)
    limit = needed + fraction * (base.power_limit_watts - needed)
    capped = base.model_copy(update={"power_limit_watts": limit})
    window = [TraceRequest(0.2 * k, 1500 + 400 * (k % 9), 40) for k in range(40)]
    run = simulate(window, ClusterConfig(capped, 1, 1), fixed_control(TOP, TOP))
    for gpu in run.gpus:
        assert gpu.busy_s > 0
        assert gpu.busy_energy_j / gpu.busy_s <= capped.tensor_parallel_size * limit * (1 + 1e-9)
    uncapped = simulate(window, ClusterConfig(base, 1, 1), fixed_control(TOP, TOP))
    # a lower cap never makes the work faster
    assert run.prefill[0].gpu.busy_s >= uncapped.prefill[0].gpu.busy_s * (1 - 1e-9)
    assert run.decode[0].gpu.busy_s >= uncapped.decode[0].gpu.busy_s * (1 - 1e-9)
