"""The agent and the twin build a service's controller with one factory: for the same spec they
make the same clock decisions on the same observations, settings and token budget included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.api.spec import EnergySpec
from joulescale.control.policy import ClockBounds, Slo
from joulescale.control.registry import twin_variants
from joulescale.engines.histogram import Histogram
from joulescale.engines.observation import Observation, Phase
from joulescale.engines.observe import ObservationBuilder
from joulescale.engines.sample import EngineSample
from joulescale.profiles import load_profile
from joulescale.twin.cluster import ClusterConfig, InstanceControl
from joulescale.twin.policies import policy_run_setup
from joulescale_agent.control.corebrain import CoreBrain, CoreBrainFactory
from joulescale_agent.control.instance import EngineInstance, InstancePolicy

PROFILE = load_profile("h100-sxm-llama-70b-tp4")
SLO = Slo(ttft_ms=600, tpot_ms=60, percentile=99)
BOUNDS = ClockBounds(900, 1830)
TOKEN_BUDGET = 4096
SPEC = EnergySpec.model_validate({
    "margin": 0.15,
    "governor": {"minHoldMs": 250},
    "decode": {"kvGuardUsage": 0.8, "slackSpendTokens": 4},
    "prefill": {"mpcHorizon": 5, "defaultPromptTokens": 2048},
    "biscale": {"mpcLevels": 5},
    "joulescale": {"mpcLevels": 6, "kvSoftUsage": 0.6, "decodeIdleWindowSeconds": 1.5},
    "voltana": {"clocksMHz": [1005, 1410, 1830], "idleSeconds": 1.0},
})
"""A spec that changes a setting of every group, so that a dropped setting shows."""

BASE_CLOCKS: dict[Phase, int] = {"prefill": 1305, "decode": 1110}


def _steps() -> st.SearchStrategy[list[tuple[float, int, int, float, int, int, float]]]:
    """(dt, running, waiting, kv usage, prompt tokens, iterations, seconds per iteration) per scrape."""
    return st.lists(
        st.tuples(
            st.sampled_from([0.05, 0.05, 0.1, 2.0]),
            st.integers(0, 96),
            st.integers(0, 12),
            st.floats(0.0, 1.0),
            st.integers(0, 9000),
            st.integers(0, 6),
            st.floats(0.005, 0.2),
        ),
        min_size=2,
        max_size=30,
    )


def _observations(phase: Phase, steps: list[tuple[float, int, int, float, int, int, float]]) -> list[EngineSample]:
    """Cumulative samples, as an engine's /metrics page grows them."""
    samples, prompt, generated, iterations, tokens, busy, now = [], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for _, running, waiting, usage, prompt_tokens, its, per_it in steps:
        prompt += prompt_tokens
        generated += running * its
        iterations += its
        tokens += prompt_tokens + running * its
        busy += its * per_it
        now += its * per_it
        samples.append(EngineSample(
            running_requests=running, waiting_requests=waiting, kv_cache_usage=usage,
            kv_capacity_tokens=PROFILE.kv_capacity_tokens, prompt_tokens_total=prompt,
            generation_tokens_total=generated, preemptions_total=0.0,
            iteration_tokens=Histogram(iterations, tokens), ttft=None,
            inter_token_latency=Histogram(iterations, busy), queue_time=Histogram(float(waiting), waiting * 0.1),
        ))
    return samples


def _agent(variant: str, phase: Phase) -> CoreBrain:
    static = variant.startswith("static")
    policy = InstancePolicy(
        "static" if static else variant, SLO, PROFILE.name, BOUNDS,
        BASE_CLOCKS[phase] if variant == "static-best" else None,
        settings=SPEC.policy_settings(), token_budget=TOKEN_BUDGET,
    )
    instance = EngineInstance("ns", "pod", phase, "vllm", "http://engine/metrics", ("GPU-0",))
    brain = CoreBrainFactory().build(instance, policy, PROFILE.supported_sm_clocks_mhz)
    assert brain is not None
    return brain


def _twin(variant: str, phase: Phase) -> InstanceControl:
    cluster = ClusterConfig(profile=PROFILE, prefill_instances=1, decode_instances=1, prefill_token_budget=TOKEN_BUDGET)
    setup = policy_run_setup(variant, cluster, SLO, BOUNDS, BASE_CLOCKS, settings=SPEC.policy_settings())
    return setup.control(phase, 0)


@settings(max_examples=60, deadline=None)
@given(
    variant=st.sampled_from([v.name for v, _ in twin_variants()]),
    phase=st.sampled_from(["prefill", "decode"]),
    steps=_steps(),
)
def test_the_agents_brain_and_the_twins_control_decide_alike(
    variant: str, phase: Phase, steps: list[tuple[float, int, int, float, int, int, float]]
) -> None:
    agent, twin = _agent(variant, phase), _twin(variant, phase)
    builder = ObservationBuilder(phase)
    now_s, clock_mhz = 100.0, PROFILE.supported_sm_clocks_mhz[-1]
    for (dt_s, *_), sample in zip(steps, _observations(phase, steps), strict=True):
        now_s += dt_s
        observation: Observation = builder.build(sample, now_s, clock_mhz)
        _, agent_mhz = agent.decide(observation)
        twin_mhz = twin.actuator.target_mhz(twin.policy.decide(observation), now_s, clock_mhz)
        assert agent_mhz == twin_mhz, (variant, phase, now_s)
        clock_mhz = agent_mhz if agent_mhz is not None else clock_mhz


def test_the_settings_of_the_spec_reach_both_controllers() -> None:
    agent, twin = _agent("joulescale", "decode"), _twin("joulescale", "decode")
    assert agent.policy.context.settings == SPEC.policy_settings()  # type: ignore[attr-defined]
    assert twin.policy.context.settings == SPEC.policy_settings()  # type: ignore[attr-defined]
    assert agent.policy.context.token_budget == TOKEN_BUDGET == twin.policy.context.token_budget  # type: ignore[attr-defined]
    assert agent.governor.min_hold_s == 0.25
