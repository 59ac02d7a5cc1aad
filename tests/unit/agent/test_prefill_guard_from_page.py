"""JouleScale's prefill misprediction guard and online correction, on the metrics view alone.

A vLLM prefill instance's page -> the agent's parser and adapter -> the core builder -> the
policy: the step time comes from the engine's per-request prefill-time histogram, the only
place a real engine publishes it.
"""

from __future__ import annotations

import pytest

from joulescale.control import DecisionReason, PolicyContext, Slo, make_policy
from joulescale.control.joulescale_policy import JouleScalePolicy
from joulescale.engines.observe import ObservationBuilder
from joulescale.profiles import load_profile
from joulescale_agent.engines import adapter_for, parse_page

from .engine_pages import EnginePage
from .test_substitutes import vllm_prefill_step

PROFILE = load_profile("h100-sxm-llama-70b-tp8")


class PrefillInstance:
    """A vLLM prefill instance scraped by the agent and controlled by JouleScale."""

    def __init__(self) -> None:
        self.page = EnginePage("vllm", running=1, waiting=3, kv_usage=0.002)
        self.adapter = adapter_for("vllm")
        self.builder = ObservationBuilder("prefill")
        policy = make_policy("joulescale", PolicyContext(profile=PROFILE, slo=Slo(ttft_ms=600, tpot_ms=100)))
        assert isinstance(policy, JouleScalePolicy)
        self.policy = policy
        self.clock_mhz = 990  # below every clock the policy picks: its first decision changes it

    def scrape_and_decide(self, now_s: float) -> tuple[DecisionReason, float | None, bool]:
        sample = self.adapter.sample(parse_page(self.page.text()))
        decision = self.policy.decide(self.builder.build(sample, now_s, self.clock_mhz))
        self.clock_mhz = decision.sm_clock_mhz
        return decision.reason, decision.predicted_iteration_s, decision.urgent


def _predicted_step_s(instance: PrefillInstance) -> float:
    instance.scrape_and_decide(0.0)
    vllm_prefill_step(instance.page, 0.2, [0.05])
    _, predicted_s, _ = instance.scrape_and_decide(0.5)
    assert predicted_s is not None
    return predicted_s


def test_a_slow_prefill_step_seen_on_the_page_trips_the_guard_and_teaches_the_correction() -> None:
    instance = PrefillInstance()
    predicted_s = _predicted_step_s(instance)
    clock_mhz = instance.clock_mhz
    assert clock_mhz < PROFILE.max_sm_clock_mhz
    versions = instance.policy.predictor.version

    vllm_prefill_step(instance.page, predicted_s * 1.5, [0.05, 0.1])
    reason, _, urgent = instance.scrape_and_decide(2.0)

    assert (reason, instance.clock_mhz, urgent) == (
        DecisionReason.MISPREDICTION_GUARD, PROFILE.max_sm_clock_mhz, True
    )
    assert instance.policy.predictor.version == versions + 1
    assert instance.policy.predictor.factor("prefill", clock_mhz) > 1.0


def test_a_prefill_step_as_predicted_teaches_the_correction_without_the_guard() -> None:
    instance = PrefillInstance()
    predicted_s = _predicted_step_s(instance)
    clock_mhz = instance.clock_mhz
    versions = instance.policy.predictor.version

    vllm_prefill_step(instance.page, predicted_s, [0.05])
    reason, _, _ = instance.scrape_and_decide(2.0)

    assert reason != DecisionReason.MISPREDICTION_GUARD
    assert instance.policy.predictor.version == versions + 1
    assert instance.policy.predictor.factor("prefill", clock_mhz) == pytest.approx(1.0)


def test_two_steps_between_scrapes_are_not_paired_with_the_one_prediction() -> None:
    """Under several steps per interval the mean is not the step predicted: no guard, no sample."""
    instance = PrefillInstance()
    predicted_s = _predicted_step_s(instance)
    versions = instance.policy.predictor.version

    vllm_prefill_step(instance.page, predicted_s * 1.5, [0.05])
    vllm_prefill_step(instance.page, predicted_s * 1.5, [0.05])
    reason, _, _ = instance.scrape_and_decide(2.0)

    assert reason != DecisionReason.MISPREDICTION_GUARD
    assert instance.policy.predictor.version == versions
