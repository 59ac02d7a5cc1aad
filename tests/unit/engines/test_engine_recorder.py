"""The recorder publishes on each engine's schedule, with the engine's own bucket edges."""

from __future__ import annotations

from joulescale.engines import dialect_for
from joulescale.engines.dialects import SGLANG_DECODE_LOG_INTERVAL, VLLM_REQUEST_TIME_EDGES_S
from joulescale.engines.model import DecodeModel, EngineRequest, PrefillModel
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import load_profile

PROFILE = load_profile("h100-sxm-llama-70b-tp4")


def test_a_vllm_scrape_in_the_middle_of_a_step_shows_the_previous_step() -> None:
    recorder = MetricsRecorder(dialect_for("vllm"), PROFILE.kv_capacity_tokens)
    model = PrefillModel(PROFILE, 8192, recorder)
    for i in range(3):
        model.enqueue(EngineRequest(i, 0.0, 5000, 2), 0.0)
    assert model.start_step(0.0)  # 5000 + 3192 of the second
    mid = recorder.sample()
    assert (mid.running_requests, mid.waiting_requests, mid.prompt_tokens_total) == (0, 0, 0)
    assert mid.iteration_tokens is not None
    assert mid.iteration_tokens.count == 0
    step_s = model.step_latency_s(1980)
    model.finish_step(step_s, step_s)
    assert model.start_step(step_s)
    during_second = recorder.sample()
    # The first step's end: one request partly prefilled (running), one not scheduled.
    assert (during_second.running_requests, during_second.waiting_requests) == (1, 1)
    assert during_second.prompt_tokens_total == 5000
    assert during_second.kv_cache_usage is not None
    assert round(during_second.kv_cache_usage * PROFILE.kv_capacity_tokens) == 5000 + 3192


def test_vllm_queue_time_buckets_start_at_0_3_s() -> None:
    recorder = MetricsRecorder(dialect_for("vllm"), 1000)
    recorder.request_finished(prompt_tokens=10, generated_tokens=1, queue_s=0.04, prefill_s=0.2)
    queue = recorder.sample().queue_time
    assert queue is not None
    assert min(queue.buckets) == VLLM_REQUEST_TIME_EDGES_S[0] == 0.3
    assert queue.buckets[0.3] == 1


def test_an_sglang_prefill_instance_publishes_as_a_batch_forms_not_at_step_ends() -> None:
    recorder = MetricsRecorder(dialect_for("sglang"), PROFILE.kv_capacity_tokens)
    model = PrefillModel(PROFILE, 8192, recorder)
    for i in range(3):
        model.enqueue(EngineRequest(i, 0.0, 5000, 2), 0.0)
    assert model.start_step(0.0)  # 5000 + 3192 of the second; the third waits
    formed = recorder.sample()
    # running: the decode batch (none on a P/D prefill instance); KV before the batch's allocation
    assert (formed.running_requests, formed.waiting_requests, formed.kv_cache_usage) == (0, 1, 0.0)
    assert formed.iteration_tokens is None
    assert formed.queue_time is None
    assert formed.prefill_time is None
    step_s = model.step_latency_s(1980)
    model.finish_step(step_s, step_s)
    ended = recorder.sample()  # a step end publishes no gauge
    assert (ended.running_requests, ended.waiting_requests, ended.kv_cache_usage) == (0, 1, 0.0)
    assert model.start_step(step_s)
    second = recorder.sample()
    assert second.waiting_requests == 0
    assert second.prompt_tokens_total == 5000  # the first request finished: SGLang counts it now
    # The first prompt (awaiting its pull) and the second's first chunk, rounded as SGLang does.
    assert second.kv_cache_usage == round((5000 + 3192) / PROFILE.kv_capacity_tokens, 2)


def test_an_sglang_decode_gauge_changes_only_every_decode_log_interval_steps() -> None:
    recorder = MetricsRecorder(dialect_for("sglang"), 2000)
    model = DecodeModel(PROFILE, 2000, 64, 0.01, recorder)
    for i in range(4):
        model.enqueue(EngineRequest(i, 0.0, 100, 200), 0.0)
    now_s = 0.0
    published = []
    for _ in range(2 * SGLANG_DECODE_LOG_INTERVAL + 5):
        assert model.start_step(now_s)
        step_s = model.step_latency_s(1980)
        now_s += step_s
        model.finish_step(now_s, step_s)
        sample = recorder.sample()
        published.append((sample.running_requests, sample.kv_cache_usage))
    changes = [i + 1 for i in range(1, len(published)) if published[i] != published[i - 1]]
    assert changes == [SGLANG_DECODE_LOG_INTERVAL, 2 * SGLANG_DECODE_LOG_INTERVAL]
    assert published[SGLANG_DECODE_LOG_INTERVAL - 2][0] == 0
    assert published[SGLANG_DECODE_LOG_INTERVAL - 1] == (4, round(4 * (100 + 1 + 40) / 2000, 2))
    # Token counters wait for the requests to finish; ITL counts one per generated token.
    last = recorder.sample()
    assert last.generation_tokens_total == 0
    assert last.inter_token_latency is not None
    assert last.inter_token_latency.count == 4 * (len(published) - 1)


def test_an_unchanged_page_is_the_same_sample_and_diffs_to_nothing() -> None:
    recorder = MetricsRecorder(dialect_for("vllm"), 1000)
    first = recorder.sample()
    assert recorder.sample() is first
    assert first.ttft is not None
    still = first.ttft.minus(first.ttft)
    assert (still.count, still.sum, set(still.buckets.values())) == (0.0, 0.0, {0.0})
    recorder.first_token(0.2)
    later = recorder.sample()
    assert later is not first
    assert later.ttft is not None
    grown = later.ttft.minus(first.ttft)
    assert (grown.count, grown.buckets[0.25], grown.buckets[0.1]) == (1.0, 1.0, 0.0)
