"""An aggregated instance's prefill controller predicts the mixed steps its prompts run in
(joulescale/control/mixed_step.py); a P/D instance's is unchanged."""

from __future__ import annotations

import pytest

from joulescale.control import Slo, build_controller
from joulescale.control.aggregated import AggregatedPolicy
from joulescale.control.mixed_step import MixedStepPredictor
from joulescale.control.online import OnlineCorrection
from joulescale.control.predictor import ProfilePredictor
from joulescale.profiles import load_profile
from joulescale.profiles import physics as ph

from .helpers import decode_obs, prefill_obs

TP4 = load_profile("h100-sxm-llama-70b-tp4")
SLO = Slo(ttft_ms=600, tpot_ms=100)


def test_without_decodes_a_prompt_step_is_a_plain_prefill_step() -> None:
    mixed, plain = MixedStepPredictor(TP4), ProfilePredictor(TP4)
    for clock in (1980, 1200, 600):
        assert mixed.prefill_s(2048, 2048.0**2, clock) == plain.prefill_s(2048, 2048.0**2, clock)


@pytest.mark.parametrize("clock", [1980, 1200])
def test_with_decodes_a_prompt_step_pays_the_decode_step_and_the_chunks_marginal_cost(clock: int) -> None:
    mixed = MixedStepPredictor(TP4)
    mixed.observe_decodes(96, 96 * 800)
    decode_s, chunk_s = ph.mixed_step_parts_s(TP4, 96, 96 * 800, 2048, 2048.0**2, clock)
    assert mixed.prefill_s(2048, 2048.0**2, clock) == pytest.approx(decode_s + chunk_s)
    # longer than the pure prefill step by more than the base it saves
    assert mixed.prefill_s(2048, 2048.0**2, clock) > ProfilePredictor(TP4).prefill_s(2048, 2048.0**2, clock)
    assert mixed.decode_s(96, 96 * 800, clock) == ph.decode_latency_s(TP4, 96, 96 * 800, clock)


def test_a_new_decode_load_renews_the_corrected_predictions() -> None:
    """Cached plans and ready clocks key on OnlineCorrection.version: a new load must change it."""
    mixed = MixedStepPredictor(TP4)
    corrected = OnlineCorrection(mixed)
    before = corrected.version
    mixed.observe_decodes(10, 10_000)
    assert corrected.version != before
    same = corrected.version
    mixed.observe_decodes(10, 10_000)
    assert corrected.version == same
    assert OnlineCorrection(ProfilePredictor(TP4)).version == 0


def test_the_aggregated_controller_tells_its_prefill_side_the_decode_load_before_it_decides() -> None:
    controller = build_controller("joulescale", TP4, SLO, role="aggregated")
    policy = controller.policy
    assert isinstance(policy, AggregatedPolicy)
    assert policy.mixed is not None
    policy.decide_pair(prefill_obs(waiting=2, running=0), decode_obs(batch_size=80, context_tokens=70_000))
    assert (policy.mixed.decode_batch, policy.mixed.decode_context_tokens) == (80, 70_000)
    policy.decide(decode_obs(batch_size=40, context_tokens=30_000))
    assert (policy.mixed.decode_batch, policy.mixed.decode_context_tokens) == (40, 30_000)


def test_a_p_d_controller_keeps_the_profile_predictor() -> None:
    controller = build_controller("joulescale", TP4, SLO, role="prefill")
    assert not isinstance(controller.policy, AggregatedPolicy)
