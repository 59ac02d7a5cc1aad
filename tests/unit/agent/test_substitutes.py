"""The substitutes for signals no engine publishes, seen through real page text on each engine.

Every test drives an engine's metrics as the engine does, renders the page, and reads it with
the agent's parser and adapter into the core builder: the path of a scrape in production.
"""

from __future__ import annotations

import pytest

from joulescale.engines.histogram import Histogram
from joulescale.engines.observation import Observation, Phase
from joulescale.engines.observe import ObservationBuilder
from joulescale.engines.substitutes import longest_wait_s
from joulescale_agent.engines import adapter_for, parse_page

from .engine_pages import EnginePage

VLLM_PREFILL = "vllm:request_prefill_time_seconds"
VLLM_QUEUE = "vllm:request_queue_time_seconds"
VLLM_TTFT = "vllm:time_to_first_token_seconds"
VLLM_ITL = "vllm:inter_token_latency_seconds"
VLLM_STEPS = "vllm:iteration_tokens_total"
SG_QUEUE = "sglang:queue_time_seconds"
SG_TTFT = "sglang:time_to_first_token_seconds"
SG_ITL = "sglang:inter_token_latency_seconds"


class Scrapes:
    """One engine's pages read as the agent reads them, into one builder."""

    def __init__(self, engine: EnginePage, phase: Phase) -> None:
        self.engine = engine
        self.adapter = adapter_for(engine.engine)
        self.builder = ObservationBuilder(phase)
        self.now_s = 100.0

    def scrape(self, after_s: float = 0.1) -> Observation:
        self.now_s += after_s
        sample = self.adapter.sample(parse_page(self.engine.text()))
        return self.builder.build(sample, self.now_s, 1980)


def vllm_prefill_step(page: EnginePage, step_s: float, waits_s: list[float], prompt: int = 2000) -> None:
    """One unchunked prefill step of a P/D prefill instance: each request queued, ran in this
    step and finished with its first token, as vLLM V1 records it (TTFT at the first token;
    queue and prefill times at the finish; one iteration-tokens observation per step)."""
    for wait_s in waits_s:
        page.observe(VLLM_QUEUE, wait_s)
        page.observe(VLLM_PREFILL, step_s)
        page.observe(VLLM_TTFT, wait_s + step_s + 0.002)  # the frontend's share
    page.observe(VLLM_STEPS, prompt * len(waits_s))
    page.prompt_tokens += prompt * len(waits_s)
    page.generation_tokens += len(waits_s)


def sglang_prefill_batch(page: EnginePage, step_s: float, waits_s: list[float]) -> None:
    """One SGLang prefill batch: queue times recorded as it forms, TTFT as the tokens arrive."""
    for wait_s in waits_s:
        page.observe(SG_QUEUE, wait_s)
        page.observe(SG_TTFT, wait_s + step_s)


def sglang_decode_steps(page: EnginePage, steps: int, step_s: float, batch: int, chunk: int = 1) -> None:
    """``steps`` decode steps of ``batch`` requests; the tokenizer records the inter-token latency
    per chunk of ``chunk`` tokens (``observe_inter_token_latency``: the chunk's interval to the sum,
    its token count to the bucket of interval / tokens)."""
    assert steps % chunk == 0
    for _ in range(steps // chunk):
        page.observe(SG_ITL, step_s, times=chunk * batch)


# --- prefill step time ---


def test_vllm_prefill_step_time_is_the_prefill_histograms_mean_over_the_interval() -> None:
    page = EnginePage("vllm", running=0, waiting=2)
    scrapes = Scrapes(page, "prefill")
    vllm_prefill_step(page, 0.8, [0.1, 0.1])
    scrapes.scrape()
    vllm_prefill_step(page, 0.45, [0.05, 0.2, 0.05])
    obs = scrapes.scrape()
    assert obs.iterations_delta == 1
    assert obs.mean_iteration_s == pytest.approx(0.45)
    assert obs.last_iteration_s is None


def test_vllm_without_the_prefill_histogram_uses_ttft_minus_queue_time() -> None:
    page = EnginePage("vllm", waiting=1, omit={VLLM_PREFILL})
    scrapes = Scrapes(page, "prefill")
    scrapes.scrape()
    vllm_prefill_step(page, 0.45, [0.05, 0.25])
    obs = scrapes.scrape()
    assert obs.mean_iteration_s == pytest.approx(0.452)  # the step and the frontend's 2 ms


def test_an_interval_in_which_no_prefill_ended_has_no_step_time() -> None:
    page = EnginePage("vllm", running=1)
    scrapes = Scrapes(page, "prefill")
    vllm_prefill_step(page, 0.45, [0.05])
    scrapes.scrape()
    obs = scrapes.scrape()
    assert (obs.iterations_delta, obs.mean_iteration_s) == (0, None)


def test_sglang_prefill_step_time_is_ttft_minus_queue_time_when_the_same_requests_entered_both() -> None:
    page = EnginePage("sglang", running=3)
    scrapes = Scrapes(page, "prefill")
    scrapes.scrape()
    sglang_prefill_batch(page, 0.3, [0.0, 0.15, 0.6])
    obs = scrapes.scrape()
    assert obs.mean_iteration_s == pytest.approx(0.3)
    assert obs.iterations_delta == 0  # SGLang has no step counter for prefill: none is claimed
    # A batch that formed before the scrape and is still running: the counts differ.
    page.observe(SG_QUEUE, 0.2)
    assert scrapes.scrape().mean_iteration_s is None


# --- decode steps and step time ---


def test_sglang_decode_steps_are_the_itl_count_per_running_request() -> None:
    page = EnginePage("sglang", running=8)
    scrapes = Scrapes(page, "decode")
    scrapes.scrape()
    sglang_decode_steps(page, steps=12, step_s=0.025, batch=8)
    obs = scrapes.scrape()
    assert obs.iterations_delta == 12
    assert obs.mean_iteration_s == pytest.approx(0.025)


def test_sglang_decode_steps_hold_for_a_batch_that_shrinks_evenly_and_for_chunked_reports() -> None:
    page = EnginePage("sglang", running=8)
    scrapes = Scrapes(page, "decode")
    scrapes.scrape()
    sglang_decode_steps(page, steps=10, step_s=0.03, batch=8, chunk=5)
    sglang_decode_steps(page, steps=10, step_s=0.02, batch=4, chunk=5)
    page.running = 4
    obs = scrapes.scrape()
    assert obs.iterations_delta == 20
    assert obs.mean_iteration_s == pytest.approx((80 * 0.03 + 40 * 0.02) / 120)


def test_vllm_decode_steps_come_from_the_iteration_histogram_not_the_itl_count() -> None:
    page = EnginePage("vllm", running=8)
    scrapes = Scrapes(page, "decode")
    scrapes.scrape()
    for _ in range(7):
        page.observe(VLLM_STEPS, 8)
        page.observe(VLLM_ITL, 0.02, times=8)
    obs = scrapes.scrape()
    assert (obs.iterations_delta, obs.mean_iteration_s) == (7, pytest.approx(0.02))


# --- queue wait ---


def test_the_longest_wait_is_bounded_below_by_the_highest_bucket_not_only_the_mean() -> None:
    page = EnginePage("vllm", waiting=4)
    scrapes = Scrapes(page, "prefill")
    scrapes.scrape()
    vllm_prefill_step(page, 0.2, [0.01, 0.01, 0.01, 1.7])
    obs = scrapes.scrape()
    assert obs.oldest_wait_s == pytest.approx(1.5)  # 1.7 s is in vLLM's (1.5, 2.0] bucket; the mean is 0.43
    # Below vLLM's first edge (0.3 s) only the mean is known.
    vllm_prefill_step(page, 0.2, [0.01, 0.2])
    assert scrapes.scrape().oldest_wait_s == pytest.approx(0.105)


def test_sglang_queue_wait_comes_from_its_scheduler_histogram() -> None:
    page = EnginePage("sglang", waiting=2)
    scrapes = Scrapes(page, "prefill")
    scrapes.scrape()
    sglang_prefill_batch(page, 0.3, [0.05, 0.7])
    assert scrapes.scrape().oldest_wait_s == pytest.approx(0.5)


def test_a_single_recorded_wait_is_exact_and_an_empty_interval_has_none() -> None:
    assert longest_wait_s(Histogram(1.0, 2.2, {0.3: 0.0, 2.5: 1.0, float("inf"): 1.0})) == pytest.approx(2.2)
    assert longest_wait_s(Histogram(0.0, 0.0, {0.3: 0.0, float("inf"): 0.0})) is None
    assert longest_wait_s(None) is None


def test_no_wait_is_reported_while_nothing_waits() -> None:
    page = EnginePage("vllm", waiting=0)
    scrapes = Scrapes(page, "prefill")
    scrapes.scrape()
    vllm_prefill_step(page, 0.2, [0.9])
    assert scrapes.scrape().oldest_wait_s is None


# --- counter resets and missing families ---


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_after_an_engine_restart_the_substitutes_count_from_zero(engine: str) -> None:
    page = EnginePage(engine, running=4, waiting=1)
    scrapes = Scrapes(page, "decode")
    for _ in range(50):
        page.observe(VLLM_STEPS if engine == "vllm" else SG_ITL, 4 if engine == "vllm" else 0.03)
    scrapes.scrape()
    page.restart()
    for _ in range(3):
        if engine == "vllm":
            page.observe(VLLM_STEPS, 4)
            page.observe(VLLM_ITL, 0.02, times=4)
        else:
            page.observe(SG_ITL, 0.02, times=4)
    obs = scrapes.scrape()
    assert (obs.iterations_delta, obs.mean_iteration_s) == (3, pytest.approx(0.02))


def test_vllm_prefill_step_time_after_a_restart_is_the_new_engines_alone() -> None:
    page = EnginePage("vllm", waiting=1)
    scrapes = Scrapes(page, "prefill")
    for _ in range(20):
        vllm_prefill_step(page, 2.0, [0.1])
    scrapes.scrape()
    page.restart()
    vllm_prefill_step(page, 0.35, [0.1])
    obs = scrapes.scrape()
    assert (obs.iterations_delta, obs.mean_iteration_s) == (1, pytest.approx(0.35))


@pytest.mark.parametrize(
    ("engine", "phase", "omitted"),
    [
        ("vllm", "prefill", {VLLM_PREFILL, VLLM_TTFT}),
        ("vllm", "prefill", {VLLM_PREFILL, VLLM_QUEUE}),
        ("sglang", "prefill", {SG_QUEUE}),
        ("sglang", "decode", {SG_ITL}),
        ("vllm", "decode", {VLLM_ITL}),
    ],
)
def test_a_missing_family_leaves_its_substitute_none_and_nothing_else_fills_it(
    engine: str, phase: Phase, omitted: set[str]
) -> None:
    page = EnginePage(engine, running=4, waiting=2, omit=omitted)
    scrapes = Scrapes(page, phase)
    scrapes.scrape()
    if engine == "vllm":
        vllm_prefill_step(page, 0.3, [0.5, 0.6])
        page.observe(VLLM_ITL, 0.02, times=4)
    else:
        sglang_prefill_batch(page, 0.3, [0.5, 0.6])
        sglang_decode_steps(page, steps=3, step_s=0.02, batch=4)
    obs = scrapes.scrape()
    assert obs.mean_iteration_s is None
    if SG_ITL in omitted:
        assert obs.iterations_delta == 0
    if SG_QUEUE in omitted or VLLM_QUEUE in omitted:
        assert obs.oldest_wait_s is None


# --- every policy-visible field, per engine: the substitute or None ---


def _busy_interval(engine: str, phase: Phase) -> Observation:
    """Two scrapes around one interval in which the engine did the phase's work."""
    page = EnginePage(engine, running=4, waiting=2)
    scrapes = Scrapes(page, phase)
    scrapes.scrape()
    if engine == "vllm" and phase == "prefill":
        vllm_prefill_step(page, 0.4, [0.05, 0.6])
    elif engine == "vllm":
        for _ in range(5):
            page.observe(VLLM_STEPS, 4)
            page.observe(VLLM_ITL, 0.02, times=4)
        page.observe(VLLM_QUEUE, 0.6)
    elif phase == "prefill":
        sglang_prefill_batch(page, 0.4, [0.05, 0.6])
    else:
        sglang_decode_steps(page, steps=5, step_s=0.02, batch=4)
        page.observe(SG_QUEUE, 0.6)
    return scrapes.scrape()


FIELDS = [
    # (engine, phase, iterations_delta, mean_iteration_s, oldest_wait_s)
    ("vllm", "prefill", 1, 0.4, 0.5),
    ("vllm", "decode", 5, 0.02, 0.6),
    ("sglang", "prefill", 0, 0.4, 0.5),
    ("sglang", "decode", 5, 0.02, 0.6),
]


@pytest.mark.parametrize(("engine", "phase", "iterations", "mean_s", "wait_s"), FIELDS)
def test_each_policy_visible_field_is_its_substitute_or_none(
    engine: str, phase: Phase, iterations: int, mean_s: float, wait_s: float
) -> None:
    obs = _busy_interval(engine, phase)
    assert obs.last_iteration_s is None  # no engine publishes one step's duration
    assert obs.iterations_delta == iterations
    assert obs.mean_iteration_s == pytest.approx(mean_s)
    assert obs.oldest_wait_s == pytest.approx(wait_s)
    assert (obs.queue, obs.decoding) == (None, None)  # the engine-hook view only
