"""The core aggregated model: one token budget shared by decodes (first) and prefill chunks."""

from __future__ import annotations

import random

import pytest

from joulescale.engines import dialect_for
from joulescale.engines.model import (
    AggregatedModel,
    DecodeModel,
    EngineRequest,
    PrefillModel,
    chunk_squared_tokens,
)
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import load_profile, physics

PROFILE = load_profile("h100-sxm-llama-70b-tp4")
MHZ = 1980


def _model(budget: int = 100, kv: int = 100_000, max_running: int = 64,
           recorder: MetricsRecorder | None = None) -> AggregatedModel[EngineRequest]:
    return AggregatedModel(PROFILE, budget, kv, max_running, 0.0, recorder)


def _step(model: AggregatedModel[EngineRequest], now_s: float) -> tuple[float, list[EngineRequest]]:
    step_s = model.step_latency_s(MHZ)
    return now_s + step_s, model.finish_step(now_s + step_s, step_s)


def _drain(model: AggregatedModel[EngineRequest], now_s: float = 0.0,
           limit: int = 100_000) -> tuple[float, list[EngineRequest], list[tuple[int, int, int]]]:
    """Run to the end; returns the end, the finished requests and (decodes, chunk tokens, KV) per step."""
    finished: list[EngineRequest] = []
    steps: list[tuple[int, int, int]] = []
    while model.start_step(now_s):
        steps.append((model.step_batch, model.step_tokens, model.kv_tokens))
        now_s, done = _step(model, now_s)
        finished += done
        assert len(steps) < limit
    return now_s, finished, steps


def test_decodes_are_scheduled_first_and_prompts_get_what_the_budget_leaves() -> None:
    model = _model(budget=100)
    for i in range(3):
        model.enqueue(EngineRequest(i, 0.0, 10, 50), 0.0)
    assert model.start_step(0.0)
    assert model.step_tokens == 30
    assert model.step_batch == 0
    now_s, _ = _step(model, 0.0)
    assert [r.request_id for r in model.prefilled] == [0, 1, 2]
    model.enqueue(EngineRequest(3, now_s, 500, 5), now_s)
    assert model.start_step(now_s)
    assert model.step_batch == 3
    assert model.step_tokens == 97  # the budget less one token per running decode
    assert model.step[0].chunk_tokens == 97


def test_a_long_prompt_is_chunked_and_gets_its_first_token_with_its_last_chunk() -> None:
    model = _model(budget=100)
    request = EngineRequest(0, 0.0, 250, 3)
    model.enqueue(request, 0.0)
    chunks: list[tuple[int, int]] = []
    now_s = 0.0
    while request.engine_first_token_s < 0.0:
        assert model.start_step(now_s)
        chunks.append((model.step_tokens, model.step_log[-1][3]))
        now_s, _ = _step(model, now_s)
    assert [c for c, _ in chunks] == [100, 100, 50]
    assert sum(s2 for _, s2 in chunks) == 250 * 250  # the chunks' attention adds up to the whole prompt's
    assert request.engine_first_token_s == now_s
    # Then two decode steps and it is done (three output tokens, the first from the prefill).
    _end_s, finished, steps = _drain(model, now_s)
    assert finished == [request]
    assert [b for b, _, _ in steps] == [1, 1]


def test_chunks_after_a_prefix_cost_their_attention_over_it() -> None:
    model = _model(budget=100)
    model.enqueue(EngineRequest(0, 0.0, 150, 2), 0.0)
    model.enqueue(EngineRequest(1, 0.0, 30, 2), 0.0)
    assert model.start_step(0.0)
    _step(model, 0.0)
    assert model.start_step(1.0)
    # The head's second chunk (50 after 100) and the second prompt's 30 share the step.
    assert model.step_tokens == 80
    assert model.step_log[-1][3] == chunk_squared_tokens(100, 50) + chunk_squared_tokens(0, 30)


def test_a_mixed_step_pays_the_fixed_cost_once() -> None:
    """Decode step + the chunk's marginal prefill: less than a decode step and a prefill step, more
    than either, and the chunk's share grows at lower clocks."""
    model = _model(budget=2048)
    for i in range(8):
        model.enqueue(EngineRequest(i, 0.0, 16, 100), 0.0)
    model.start_step(0.0)
    now_s, _ = _step(model, 0.0)
    model.enqueue(EngineRequest(99, now_s, 1500, 10), now_s)
    model.start_step(now_s)
    assert (model.step_batch, model.step_tokens) == (8, 1500)
    context = model.step_log[-1][1]
    decode_s = physics.decode_latency_s(PROFILE, 8, context, MHZ)
    prefill_s = physics.prefill_latency_from_sums_s(PROFILE, 1500, 1500 ** 2, MHZ)
    mixed_s = model.step_latency_s(MHZ)
    assert max(decode_s, prefill_s) < mixed_s < decode_s + prefill_s
    assert model.step_latency_s(1000) > mixed_s
    watts = model.step_power_watts(MHZ)
    lo, hi = sorted((physics.busy_power_watts(PROFILE, "decode", MHZ, 8), physics.busy_power_watts(PROFILE, "prefill", MHZ, 1)))
    assert lo < watts < hi


def test_admission_follows_the_decode_rules_max_running_counts_prompts_in_prefill() -> None:
    model = _model(budget=1000, kv=100, max_running=8)
    for i in range(3):
        model.enqueue(EngineRequest(i, 0.0, 40, 5), 0.0)
    assert model.start_step(0.0)
    assert list(model.prefilling) == [0, 1]  # a third 41-token context would pass 100 tokens
    reference = DecodeModel(PROFILE, kv_capacity_tokens=100, max_running=8, watermark=0.0)
    for i in range(3):
        reference.enqueue(EngineRequest(i, 0.0, 40, 5), 0.0)
    reference.start_step(0.0)
    assert list(reference.running) == list(model.prefilling)
    narrow = _model(budget=1000, max_running=2)
    for i in range(3):
        narrow.enqueue(EngineRequest(i, 0.0, 10, 5), 0.0)
    narrow.start_step(0.0)
    assert len(narrow.prefilling) == 2
    assert len(narrow.waiting) == 1


def test_the_newest_request_is_preempted_and_its_context_prefilled_again() -> None:
    recorder = MetricsRecorder(dialect_for("vllm"), 100)
    model = _model(budget=1000, kv=100, max_running=8, recorder=recorder)
    a, b = EngineRequest(0, 0.0, 40, 30), EngineRequest(1, 0.0, 40, 30)
    model.enqueue(a, 0.0)
    model.enqueue(b, 0.0)
    _, finished, steps = _drain(model)
    assert sorted(r.request_id for r in finished) == [0, 1]
    assert b.preemptions >= 1
    assert a.preemptions == 0
    assert max(kv for _, _, kv in steps) <= 100
    # Its readmission prefilled its whole context (prompt and the tokens it had), not the prompt alone.
    recomputes = [tokens for _, tokens, _ in steps[1:] if tokens]
    assert recomputes
    assert recomputes[0] > 40
    sample = recorder.sample()
    assert sample.preemptions_total == b.preemptions
    assert sample.generation_tokens_total == 60  # every token once, none lost or doubled by the recompute
    assert sample.ttft.count == 2


def test_a_prompt_in_prefill_is_preempted_before_a_decode() -> None:
    model = _model(budget=10, kv=120, max_running=8)
    old = EngineRequest(0, 0.0, 20, 200)
    model.enqueue(old, 0.0)
    now_s = 0.0
    while old.engine_first_token_s < 0.0:
        model.start_step(now_s)
        now_s, _ = _step(model, now_s)  # old decodes from now on
    young = EngineRequest(1, now_s, 90, 5)  # admitted (22 + 1 + 91 + 1 <= 120), 9 tokens a step
    model.enqueue(young, now_s)
    assert model.start_step(now_s)
    assert list(model.prefilling) == [1]
    now_s, _ = _step(model, now_s)
    preempted_first: EngineRequest | None = None
    finished: list[EngineRequest] = []
    while model.start_step(now_s):
        now_s, done = _step(model, now_s)
        finished += done
        for r in (old, young):
            if r.preemptions and preempted_first is None:
                preempted_first = r
    assert preempted_first is young


def test_random_work_conserves_tokens_and_respects_budget_and_cache() -> None:
    rng = random.Random(7)
    budget, kv = 256, 4000
    recorder = MetricsRecorder(dialect_for("vllm"), kv)
    model = _model(budget=budget, kv=kv, max_running=32, recorder=recorder)
    requests = [EngineRequest(i, 0.0, rng.randint(1, 900), rng.randint(1, 120)) for i in range(120)]
    now_s = 0.0
    finished: list[EngineRequest] = []
    pending = list(requests)
    while pending or model.busy or model.waiting or model.prefilling or model.decode.running:
        while pending and rng.random() < 0.3:
            model.enqueue(pending.pop(0), now_s)
        if not model.start_step(now_s):
            if pending:
                model.enqueue(pending.pop(0), now_s)
                continue
            break
        assert model.step_batch + model.step_tokens <= budget
        now_s, done = _step(model, now_s)
        assert model.kv_tokens <= kv
        finished += done
    assert sorted(r.request_id for r in finished) == list(range(120))
    assert recorder.sample().generation_tokens_total == sum(r.output_tokens for r in requests)
    assert recorder.sample().ttft.count == 120
    assert model.queued_tokens == 0
    assert model.reserved_tokens == 0


def test_a_one_token_answer_finishes_with_its_prefill() -> None:
    model = _model()
    model.enqueue(EngineRequest(0, 0.0, 50, 1), 0.0)
    _, finished, steps = _drain(model)
    assert [r.request_id for r in finished] == [0]
    assert len(steps) == 1


def test_prefill_only_steps_match_the_prefill_model() -> None:
    """With no decode running, a step is a P/D prefill instance's step."""
    agg = _model(budget=512)
    ref = PrefillModel(PROFILE, 512)
    for i, length in enumerate((300, 400)):
        agg.enqueue(EngineRequest(i, 0.0, length, 2), 0.0)
        ref.enqueue(EngineRequest(i, 0.0, length, 2), 0.0)
    agg.start_step(0.0)
    ref.start_step(0.0)
    assert agg.step_latency_s(MHZ) == pytest.approx(ref.step_latency_s(MHZ))


def test_the_budget_must_hold_every_running_decode() -> None:
    with pytest.raises(ValueError, match="max_running"):
        AggregatedModel(PROFILE, 16, 1000, 64, 0.0)


def test_the_colocated_prefill_view_reads_the_page_as_a_prefill_instance_would() -> None:
    """vLLM's running gauge and cache hold the decodes too: the prefill side of an aggregated
    instance sees the waiting prompts and one generated token per first token."""
    from joulescale.engines.observe import ObservationBuilder

    recorder = MetricsRecorder(dialect_for("vllm"), 100_000)
    model = _model(budget=512, recorder=recorder)
    prefill_view, decode_view = ObservationBuilder("prefill", colocated=True), ObservationBuilder("decode")
    prefill_view.build(recorder.sample(), 0.0, MHZ)
    decode_view.build(recorder.sample(), 0.0, MHZ)
    for i in range(4):
        model.enqueue(EngineRequest(i, 0.0, 300, 50), 0.0)
    now_s = 0.0
    for _ in range(6):
        model.start_step(now_s)
        now_s, _ = _step(model, now_s)
    model.enqueue(EngineRequest(9, now_s, 300, 50), now_s)
    sample = recorder.sample()
    prefill, decode = prefill_view.build(sample, now_s, MHZ), decode_view.build(sample, now_s, MHZ)
    assert decode.running_requests == 4
    assert decode.context_tokens > 0
    assert prefill.running_requests == 0
    assert prefill.context_tokens == 0
    first_tokens = sample.ttft.count if sample.ttft is not None else 0
    assert prefill.generation_tokens_delta == first_tokens == 4
    assert prefill.prompt_tokens_delta / prefill.generation_tokens_delta == 300  # the prompts' length
    assert decode.generation_tokens_delta > prefill.generation_tokens_delta


def test_a_prompt_waiting_on_an_aggregated_instance_waits_behind_a_step_in_flight() -> None:
    """The engine runs steps back to back while anything runs and admits prompts at step
    boundaries, so a prompt seen waiting waits for the step in flight, whose chunks the page does
    not show: the prefill view counts one prompt in flight then, none while nothing waits."""
    from joulescale.engines.observe import ObservationBuilder

    recorder = MetricsRecorder(dialect_for("vllm"), 100_000)
    model = _model(budget=512, recorder=recorder)
    prefill_view = ObservationBuilder("prefill", colocated=True)
    prefill_view.build(recorder.sample(), 0.0, MHZ)
    for i in range(4):
        model.enqueue(EngineRequest(i, 0.0, 300, 50), 0.0)
    model.start_step(0.0)
    now_s, _ = _step(model, 0.0)
    queued = prefill_view.build(recorder.sample(), now_s, MHZ)
    assert queued.waiting_requests > 0
    assert queued.running_requests == 1
    for _ in range(8):
        model.start_step(now_s)
        now_s, _ = _step(model, now_s)
    drained = prefill_view.build(recorder.sample(), now_s, MHZ)
    assert drained.waiting_requests == 0
    assert drained.running_requests == 0
