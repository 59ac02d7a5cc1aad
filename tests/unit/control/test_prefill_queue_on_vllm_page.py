"""JouleScale's prefill clock where the queue shows only on a vLLM V1 /metrics page.

On a P/D prefill instance vLLM's gauges change at step ends, when the batch's requests have left
(their first token was the last) and arrivals during the step are not yet admitted: running and
waiting read 0 between batches. What queued shows only in the queue-time histogram (first
bucket up to 0.3 s) of the requests that finished. Each scenario drives the engine's own
recorder (vLLM dialect) and the agent's observation builder, as the agent and the twin do.
"""

from __future__ import annotations

import pytest

from joulescale.control import Observation, make_policy
from joulescale.engines.dialects import VLLM
from joulescale.engines.observe import ObservationBuilder
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import physics as ph

from .helpers import TP4, context

_KV_TOKENS = 200_000


class _VllmPrefillPage:
    """One vLLM prefill instance's page, scraped by the agent's builder after every batch."""

    def __init__(self) -> None:
        self.recorder = MetricsRecorder(VLLM, _KV_TOKENS)
        self.builder = ObservationBuilder("prefill")
        self.now_s = 0.0

    def batch(self, prompts: list[tuple[int, float]], step_s: float, clock_mhz: int,
              scraped_s: float = 0.0) -> Observation:
        """A step that prefilled ``prompts`` (tokens, queue time) and ended; then a scrape.
        ``scraped_s``: how much of the step the scrapes before this one already covered."""
        self.now_s += step_s - scraped_s
        for tokens, queued_s in prompts:
            self.recorder.first_token(queued_s + step_s)
            self.recorder.request_finished(prompt_tokens=tokens, generated_tokens=1, queue_s=queued_s,
                                           prefill_s=step_s)
        total = sum(tokens for tokens, _ in prompts)
        self.recorder.step_ended(scheduled_tokens=total, prompt_tokens=total, generated_tokens=len(prompts),
                                 itl_tokens=0, step_s=step_s, running=0, waiting=0, kv_tokens=total,
                                 decode=False)
        self.now_s += 0.01
        return self.builder.build(self.recorder.sample(), self.now_s, clock_mhz)

    def first_chunk(self, tokens: int, step_s: float, clock_mhz: int) -> Observation:
        """A step that prefilled the first ``tokens`` of a longer prompt: it still runs."""
        self.now_s += step_s
        self.recorder.step_ended(scheduled_tokens=tokens, prompt_tokens=0, generated_tokens=0, itl_tokens=0,
                                 step_s=step_s, running=1, waiting=0, kv_tokens=tokens, decode=False)
        self.now_s += 0.01
        return self.builder.build(self.recorder.sample(), self.now_s, clock_mhz)

    def idle_scrape(self, clock_mhz: int) -> Observation:
        self.now_s += 0.05
        return self.builder.build(self.recorder.sample(), self.now_s, clock_mhz)


def test_the_builder_reports_the_queueing_of_ended_batches_while_the_gauges_show_no_queue() -> None:
    page = _VllmPrefillPage()
    page.idle_scrape(1980)
    seen = page.batch([(1000, 0.22), (1000, 0.05)], step_s=0.1, clock_mhz=1980)
    assert seen.waiting_requests == 0
    assert seen.running_requests == 0
    assert seen.oldest_wait_s is None  # nothing waits now
    # Both waits fall in vLLM's first bucket (up to 0.3 s): the mean below, their sum above.
    assert seen.recorded_wait_s == pytest.approx(0.135)
    assert seen.recorded_wait_cap_s == pytest.approx(0.27)
    assert page.idle_scrape(1980).recorded_wait_s is None  # no request finished since


def _blind_ready_clock(queued_s: float, tokens: int = 4000, batches: int = 40, chunked_first: bool = False) -> int:
    """Batches of one long prompt, each queued ``queued_s`` behind the step before it and run at
    the clock the policy set; returns the clock the policy then waits at. ``chunked_first``: the
    instance first prefilled a prompt longer than the token budget, in two steps."""
    ctx = context(profile=TP4)
    policy = make_policy("joulescale", ctx)
    page = _VllmPrefillPage()
    clock = policy.decide(page.idle_scrape(ctx.allowed_mhz[-1])).sm_clock_mhz
    if chunked_first:
        budget = ctx.token_budget
        policy.decide(page.first_chunk(budget, ph.prefill_latency_s(TP4, [budget], clock), clock))
        policy.decide(page.idle_scrape(clock))
        policy.decide(page.batch([(budget + 2000, 0.0)], ph.prefill_latency_s(TP4, [2000], clock), clock))
        clock = policy.decide(page.idle_scrape(clock)).sm_clock_mhz
    for _ in range(batches):
        step_s = ph.prefill_latency_s(TP4, [tokens], clock)
        policy.decide(page.batch([(tokens, queued_s)], step_s, clock))
        clock = policy.decide(page.idle_scrape(clock)).sm_clock_mhz
    return clock


def test_a_queue_seen_only_in_vllm_histograms_keeps_the_blind_clock_within_ttft() -> None:
    """The request queued 0.25 s behind the step before; the policy, blind to batches in
    flight, waits at the clock the next such batch runs at: queue plus prefill must fit."""
    ctx = context(profile=TP4)
    calm = _blind_ready_clock(0.0)
    queued = _blind_ready_clock(0.25)
    assert queued > calm
    assert 0.25 + ph.prefill_latency_s(TP4, [4000], calm) > ctx.ttft_budget_s  # the queue-blind clock misses
    # The queueing ran behind a step at the clock the batches ran at (``queued`` itself once it
    # settled): at that clock the request's TTFT fits the budget.
    assert 0.25 + ph.prefill_latency_s(TP4, [4000], queued) <= ctx.ttft_budget_s


def test_the_rest_of_a_chunked_prompt_running_at_a_step_end_does_not_make_the_queue_ignored() -> None:
    """vLLM shows the rest of a prompt longer than the token budget as running at a step end.
    That is no sign that the gauges show batches as they start: the policy stays blind to the
    next batch on an idle instance and keeps counting the queueing its histograms record."""
    ctx = context(profile=TP4)
    # More batches than the policy's windows hold: the long prompt itself is forgotten.
    after_chunks = _blind_ready_clock(0.25, batches=300, chunked_first=True)
    assert 0.25 + ph.prefill_latency_s(TP4, [4000], after_chunks) <= ctx.ttft_budget_s


def test_a_long_step_seen_ended_raises_the_clock_for_the_batch_that_followed_it() -> None:
    """Blind, the scrape that shows a step ended after 0.35 s is the first sign of the batch that
    followed it: what arrived meanwhile runs now, already 0.35 s late, at the clock in force. A
    clock set now settles within that batch, so the policy raises it (urgently) to one that
    still serves a long prompt there."""
    ctx = context(profile=TP4)
    policy = make_policy("joulescale", ctx)
    page = _VllmPrefillPage()
    clock = policy.decide(page.idle_scrape(ctx.allowed_mhz[-1])).sm_clock_mhz
    for _ in range(40):
        policy.decide(page.batch([(1000, 0.0)], ph.prefill_latency_s(TP4, [1000], clock), clock))
        clock = policy.decide(page.idle_scrape(clock)).sm_clock_mhz
    waited_s = 0.35
    for _ in range(6):  # scrapes every 50 ms while the step runs show nothing new
        assert policy.decide(page.idle_scrape(clock)).sm_clock_mhz == clock
    ended = page.batch([(2000, 0.0)], waited_s, clock, scraped_s=0.3)
    decision = policy.decide(ended)
    # At the calm clock a 2000-token prompt (the longest seen) 0.35 s late would miss.
    assert waited_s + ph.prefill_latency_s(TP4, [2000], clock) > ctx.ttft_budget_s
    assert decision.urgent
    raised = decision.sm_clock_mhz
    # Started at the calm clock, raised once the scrape was seen and the clock settled: in time.
    at_calm_s = ph.prefill_latency_s(TP4, [2000], clock)
    reaction_s = ended.interval_s + TP4.clock_settle_ms / 1000.0
    served_s = reaction_s + (1 - reaction_s / at_calm_s) * ph.prefill_latency_s(TP4, [2000], raised)
    assert waited_s + served_s <= ctx.ttft_budget_s
    # The next scrape shows nothing new: back to the calm clock (the governor holds it a while).
    assert policy.decide(page.idle_scrape(raised)).sm_clock_mhz == clock
