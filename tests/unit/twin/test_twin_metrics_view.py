"""The twin's metrics view is the agent's: the engine's published page, through the agent's builder."""

from __future__ import annotations

import pytest

from joulescale.engines import dialect_for
from joulescale.engines.observation import Observation, Phase
from joulescale.engines.observe import ObservationBuilder
from joulescale.engines.sample import EngineSample
from joulescale.twin.cluster import InstanceControl
from joulescale.twin.decode import DecodeInstance
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.instance_controls import InstanceControls
from joulescale.twin.prefill import PrefillInstance
from joulescale.twin.request import SimRequest
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import load_trace, scaled_window

from .helpers import FixedClock, PassThrough, profile, small_cluster

SETTLE_S = 0.05


def _controls(engine: str, policies: dict[Phase, FixedClock]) -> tuple[InstanceControls, PrefillInstance]:
    dialect = dialect_for(engine)
    p = profile()
    prefill = PrefillInstance(0, SimGpuGroup(p, "prefill", 1980, SETTLE_S), 8192, dialect)
    decode = DecodeInstance(0, SimGpuGroup(p, "decode", 1980, SETTLE_S), p.kv_capacity_tokens, 512, 0.01, dialect)

    def factory(phase: Phase, index: int) -> InstanceControl:
        return InstanceControl(policies[phase], PassThrough())

    return InstanceControls(factory, [prefill], [decode], p.kv_capacity_tokens, lambda inst: None), prefill


def test_a_prefill_policy_receives_exactly_what_the_agents_builder_makes_of_the_page() -> None:
    policy = FixedClock(990)
    controls, prefill = _controls("vllm", {"prefill": policy, "decode": FixedClock(1980)})
    reference = ObservationBuilder("prefill")
    expected: list[Observation] = []
    gpu = prefill.gpu

    def scrape(at_s: float) -> None:
        sample = controls.scrape("prefill", 0)
        visible_s = at_s + 0.01
        controls.scrape_visible(("prefill", 0, sample), visible_s)
        expected.append(reference.build(sample, visible_s, gpu.target_mhz))

    assert controls.first_decision("prefill", 0, rich=False)
    expected.append(reference.build(prefill.recorder.sample(), 0.0, 1980))
    for i in range(6):
        prefill.enqueue(SimRequest(i, 0.0, 5000, 10), 0.0)
    now_s = 0.0
    while prefill.start_step(now_s):
        prefill.run_step(now_s)
        scrape(now_s + 0.001)  # mid-step: the previous step's page
        now_s = gpu.end_s
        prefill.finish_step(now_s)
        scrape(now_s)
    assert policy.seen == expected
    # The agent reports the lock it asked for (990 MHz) while the GPU still settles to it.
    assert policy.seen[1].sm_clock_mhz == 990
    assert gpu.clock_trace[-1][0] == SETTLE_S
    # No engine publishes a prefill step's duration: the twin does not invent it. The mean step
    # time is vLLM's per-request prefill-time histogram (the builder's substitute), only once
    # a request has finished its prefill.
    assert all(o.last_iteration_s is None for o in policy.seen)
    assert policy.seen[0].mean_iteration_s is None
    assert any(o.mean_iteration_s is not None and o.mean_iteration_s > 0.0 for o in policy.seen)
    # The queue wait is the mean of vLLM's queue-time histogram deltas: the third request was
    # first scheduled in the second step, and finished there while others still waited.
    assert any(o.oldest_wait_s is not None and o.oldest_wait_s > 0.0 for o in policy.seen)
    sample: EngineSample = prefill.recorder.sample()
    assert sample.queue_time is not None
    assert min(sample.queue_time.buckets) == 0.3


def _observations(engine: str) -> tuple[list[Observation], list[Observation]]:
    seen: dict[Phase, list[Observation]] = {"prefill": [], "decode": []}

    def factory(phase: Phase, index: int) -> InstanceControl:
        policy = FixedClock(1980)
        policy.seen = seen[phase]
        return InstanceControl(policy, PassThrough())

    window = scaled_window(load_trace("azure-conv"), 2.0, 20.0)
    simulate(window, small_cluster(1, 1, engine=engine), factory)
    return seen["prefill"], seen["decode"]


def test_on_vllm_step_times_come_from_the_engines_histograms() -> None:
    prefill, decode = _observations("vllm")
    assert all(o.last_iteration_s is None for o in prefill + decode)
    # prefill: the per-request prefill-time histogram; decode: the inter-token latency one
    assert any(o.mean_iteration_s is not None for o in prefill)
    assert any(o.mean_iteration_s is not None for o in decode)
    assert sum(o.iterations_delta for o in decode) > 0
    assert sum(o.iterations_delta for o in prefill) > 0


def test_on_sglang_prefill_steps_are_unknown_and_decode_steps_are_estimated() -> None:
    prefill, decode = _observations("sglang")
    # SGLang has no step counter: a prefill instance's steps stay unknown, a decode instance's
    # are estimated from the inter-token latency count over the running requests.
    assert all(o.iterations_delta == 0 for o in prefill)
    assert sum(o.iterations_delta for o in decode) > 0
    assert all(o.last_iteration_s is None for o in prefill + decode)
    assert sum(o.generation_tokens_delta for o in decode) > 0


def test_the_engine_is_part_of_the_cluster_and_its_description() -> None:
    assert small_cluster().describe()["engine"] == "vllm"
    assert small_cluster(engine="sglang").describe()["engine"] == "sglang"
    with pytest.raises(ValueError, match="unknown engine"):
        small_cluster(engine="tgi")
