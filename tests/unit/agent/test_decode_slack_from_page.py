"""JouleScale's decode slack banking on an SGLang instance, seen through its page alone.

SGLang publishes no step counter; the steps come from its inter-token latency count per
running request. Without them the bank never moved and slow steps were never caught up.
"""

from __future__ import annotations

from joulescale.control import PolicyContext, Slo, make_policy
from joulescale.engines.observe import ObservationBuilder
from joulescale.profiles import load_profile
from joulescale_agent.engines import adapter_for, parse_page

from .engine_pages import EnginePage
from .test_substitutes import sglang_decode_steps

PROFILE = load_profile("h100-sxm-llama-70b-tp8")
BATCH = 32


def clock_after_steps(step_s: float, scrapes: int = 5, steps: int = 8) -> int:
    """The clock JouleScale picks for an SGLang decode instance whose steps took ``step_s``."""
    page = EnginePage("sglang", running=BATCH, kv_usage=0.1)
    adapter, builder = adapter_for("sglang"), ObservationBuilder("decode")
    policy = make_policy("joulescale", PolicyContext(profile=PROFILE, slo=Slo(ttft_ms=600, tpot_ms=50)))
    now_s, clock_mhz = 100.0, PROFILE.max_sm_clock_mhz
    for _ in range(scrapes):
        clock_mhz = policy.decide(builder.build(adapter.sample(parse_page(page.text())), now_s, clock_mhz)).sm_clock_mhz
        sglang_decode_steps(page, steps=steps, step_s=step_s, batch=BATCH)
        now_s += steps * step_s  # busy throughout: no idle gap
    return clock_mhz


def test_slow_sglang_decode_steps_draw_on_the_bank_and_raise_the_clock() -> None:
    on_target = clock_after_steps(0.040)
    slow = clock_after_steps(0.070)
    assert slow > on_target
