"""Samples -> observations: deltas, resets, estimates."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.control import policy_names
from joulescale.control.policy import Slo
from joulescale.engines.histogram import Histogram
from joulescale.engines.observation import Phase
from joulescale.engines.observe import ObservationBuilder
from joulescale.engines.sample import EngineSample
from joulescale.profiles import load_profile
from joulescale_agent.control.corebrain import CoreBrainFactory
from joulescale_agent.control.instance import EngineInstance, InstancePolicy
from joulescale_agent.engines.adapters import MAX_REQUESTS, MAX_VALUE

BASE = EngineSample(
    running_requests=8,
    waiting_requests=0,
    kv_cache_usage=0.25,
    kv_capacity_tokens=100_000,
    prompt_tokens_total=1000.0,
    generation_tokens_total=5000.0,
    preemptions_total=0.0,
    iteration_tokens=Histogram(400.0, 4000.0),
    ttft=None,
    inter_token_latency=Histogram(100.0, 2.0, {0.025: 90.0}),
    queue_time=Histogram(10.0, 1.0),
)


def test_first_observation_has_no_deltas_and_estimates_context_from_kv_usage() -> None:
    obs = ObservationBuilder("decode").build(BASE, 10.0, 1980)
    assert (obs.generation_tokens_delta, obs.iterations_delta, obs.interval_s) == (0, 0, 0.0)
    assert obs.context_tokens == 25_000
    assert obs.mean_iteration_s is None
    assert obs.sm_clock_mhz == 1980


def test_second_observation_carries_counter_and_histogram_deltas() -> None:
    builder = ObservationBuilder("decode")
    builder.build(BASE, 10.0, 1980)
    later = replace(
        BASE,
        generation_tokens_total=5080.0,
        iteration_tokens=Histogram(410.0, 4100.0),
        inter_token_latency=Histogram(180.0, 3.6, {0.025: 170.0}),
        waiting_requests=3,
        queue_time=Histogram(12.0, 2.0),
    )
    obs = builder.build(later, 10.05, 1500)
    assert obs.generation_tokens_delta == 80
    assert obs.iterations_delta == 10
    assert obs.interval_s == pytest.approx(0.05)
    assert obs.mean_iteration_s == pytest.approx(0.02)
    assert obs.oldest_wait_s == pytest.approx(0.5)


def test_a_counter_reset_after_an_engine_restart_never_yields_negative_deltas() -> None:
    builder = ObservationBuilder("prefill")
    builder.build(BASE, 10.0, 1980)
    restarted = replace(BASE, prompt_tokens_total=30.0, generation_tokens_total=2.0, iteration_tokens=Histogram(1.0, 8.0))
    obs = builder.build(restarted, 10.05, 1980)
    assert (obs.prompt_tokens_delta, obs.generation_tokens_delta, obs.iterations_delta) == (30, 2, 1)


def test_reset_forgets_the_baseline() -> None:
    builder = ObservationBuilder("decode")
    builder.build(BASE, 10.0, 1980)
    builder.reset()
    obs = builder.build(replace(BASE, generation_tokens_total=9000.0), 20.0, 1980)
    assert obs.generation_tokens_delta == 0
    assert obs.interval_s == 0.0


@pytest.mark.parametrize("usage", [float("nan"), float("inf"), -0.5, 1e300, 7.0])
def test_an_out_of_range_kv_usage_never_breaks_the_builder(usage: float) -> None:
    """The adapter refuses such pages; the builder still never raises nor overflows on one."""
    sample = replace(BASE, kv_cache_usage=usage, kv_capacity_tokens=2**60)
    obs = ObservationBuilder("decode").build(sample, 10.0, 1980)
    assert 0.0 <= obs.kv_cache_usage <= 1.0
    assert 0 <= obs.context_tokens <= 2**60


# --- whatever the adapter lets through, every policy decides on it without raising ---

PROFILE = "h100-sxm-llama-8b-tp1"
SUPPORTED = load_profile(PROFILE).supported_sm_clocks_mhz
values = st.sampled_from([0.0, 1.0, 1e-300, 12345.5, MAX_VALUE / 3, MAX_VALUE])
histograms = st.none() | values.flatmap(lambda c: values.map(lambda s: Histogram(c, s, {math.inf: c})))
samples = st.builds(
    EngineSample,
    running_requests=st.sampled_from([0, 1, 64, MAX_REQUESTS]),
    waiting_requests=st.sampled_from([0, 3, MAX_REQUESTS]),
    kv_cache_usage=st.none() | st.sampled_from([0.0, 0.5, 1.0]),
    kv_capacity_tokens=st.none() | st.sampled_from([1, 448_000, int(MAX_VALUE)]),
    prompt_tokens_total=st.none() | values,
    generation_tokens_total=st.none() | values,
    preemptions_total=st.none() | values,
    iteration_tokens=histograms,
    ttft=histograms,
    inter_token_latency=histograms,
    queue_time=histograms,
    prefill_time=histograms,
)


@settings(max_examples=40, deadline=None)
@given(
    policy=st.sampled_from(policy_names()),
    role=st.sampled_from(["decode", "prefill"]),
    steps=st.lists(st.tuples(samples, st.sampled_from([0.0, 1e-9, 0.05, 10.0])), min_size=1, max_size=6),
)
def test_every_policy_decides_on_any_sample_within_the_adapters_ranges(
    policy: str, role: Phase, steps: list[tuple[EngineSample, float]]
) -> None:
    instance = EngineInstance("ns", "pod", role, "vllm", "http://engine/metrics", ("GPU-0",))
    brain = CoreBrainFactory().build(
        instance, InstancePolicy(policy, Slo(ttft_ms=500, tpot_ms=50), PROFILE, None, 1005), SUPPORTED
    )
    if brain is None:
        return
    builder, now_s, clock_mhz = ObservationBuilder(role), 1000.0, SUPPORTED[-1]
    for sample, dt_s in steps:
        _, target = brain.decide(builder.build(sample, now_s, clock_mhz))
        if target is not None:
            assert target in SUPPORTED
            clock_mhz = target
        now_s += dt_s
