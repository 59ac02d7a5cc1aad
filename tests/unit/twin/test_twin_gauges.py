"""When a prefill instance's /metrics gauges change (views.py): at step ends, as vLLM V1 and SGLang
publish them, a P/D prefill batch in flight shows in no gauge and no counter until it is done."""

from __future__ import annotations

from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.prefill import PrefillInstance
from joulescale.twin.request import SimRequest
from joulescale.twin.views import scrape_prefill

from .helpers import profile

KV_TOKENS = 100_000


def _running(prompts: list[int], budget: int = 8192) -> PrefillInstance:
    """An instance that formed a batch from ``prompts`` at 0 s (what does not fit keeps waiting)."""
    inst = PrefillInstance(0, SimGpuGroup(profile(), "prefill", 1980, 0.05), budget)
    for i, tokens in enumerate(prompts):
        inst.enqueue(SimRequest(i, 0.0, tokens, 10))
    inst.form_batch(0.1)
    inst.run_batch(0.1)
    return inst


def test_at_step_end_a_batch_in_flight_shows_in_no_gauge_and_no_counter() -> None:
    inst = _running([3000, 6000])
    during = scrape_prefill(inst, 0.2, KV_TOKENS, "step-end")
    assert (during.running_requests, during.waiting_requests, during.kv_cache_usage) == (0, 0, 0.0)
    assert (during.prompt_tokens, during.generation_tokens, during.iterations) == (0, 0, 0)
    live = scrape_prefill(inst, 0.2, KV_TOKENS, "live")
    assert (live.running_requests, live.waiting_requests, live.kv_cache_usage) == (1, 1, 3000 / KV_TOKENS)
    assert live.prompt_tokens == 0  # counters are booked when a step ends, whatever the gauges


def test_a_step_end_publishes_what_its_scheduler_held_and_the_finished_batch() -> None:
    inst = _running([3000, 6000])
    inst.enqueue(SimRequest(5, 0.15, 500, 10))  # arrives during the step: unknown to its stats
    inst.finish_batch()
    after = scrape_prefill(inst, 0.6, KV_TOKENS, "step-end")
    assert after.running_requests == 0
    assert after.waiting_requests == 1  # the 6000-token prompt that did not fit, not the new arrival
    assert after.kv_cache_usage == 3000 / KV_TOKENS  # held for the decode side to pull
    assert (after.prompt_tokens, after.generation_tokens, after.iterations) == (3000, 1, 1)
    assert after.queue_wait_s is not None  # its request queued 0.1 s: booked at the step end
