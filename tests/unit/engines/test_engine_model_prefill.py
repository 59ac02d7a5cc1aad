"""The core prefill model: chunked prefill under the token budget, FIFO, timing from physics."""

from __future__ import annotations

import pytest

from joulescale.engines import dialect_for
from joulescale.engines.model import EngineRequest, PrefillModel, chunk_squared_tokens
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import load_profile, physics

PROFILE = load_profile("h100-sxm-llama-70b-tp4")


def _run_all(model: PrefillModel, start_s: float = 0.0, mhz: int = 1980) -> list[tuple[float, list[int]]]:
    """Drive the model as the protocol says; returns (step end, request ids completed) per step."""
    now_s = start_s
    ends = []
    while model.start_step(now_s):
        step_s = model.step_latency_s(mhz)
        now_s += step_s
        ends.append((now_s, [r.request_id for r in model.finish_step(now_s, step_s)]))
    return ends


def test_a_prompt_longer_than_the_budget_is_split_and_ends_with_its_last_chunk() -> None:
    model = PrefillModel(PROFILE, token_budget=1000)
    model.enqueue(EngineRequest(0, 0.0, 2500, 10), 0.0)
    model.enqueue(EngineRequest(1, 0.0, 300, 10), 0.0)
    ends = _run_all(model)
    assert [done for _, done in ends] == [[], [], [0, 1]]
    # Chunks: A 1000, A 1000 (after 1000), then A 500 (after 2000) + B 300 in one step.
    assert model.batch_log == [
        (1000, 1000 * 1000, 1),
        (1000, 1000 * 1000 + 2 * 1000 * 1000, 1),
        (800, 500 * 500 + 2 * 2000 * 500 + 300 * 300, 2),
    ]
    assert model.queued_tokens == 0
    assert not model.has_work


def test_a_prompt_that_does_not_fit_what_is_left_is_split_in_fifo_order() -> None:
    model = PrefillModel(PROFILE, token_budget=1000)
    for i, length in enumerate((600, 600, 200)):
        model.enqueue(EngineRequest(i, 0.0, length, 2), 0.0)
    ends = _run_all(model)
    assert [done for _, done in ends] == [[0], [1, 2]]
    assert model.batch_log[0] == (1000, 600 * 600 + 400 * 400, 2)
    assert model.batch_log[1] == (400, 200 * 200 + 2 * 400 * 200 + 200 * 200, 2)


def test_chunks_of_one_prompt_cost_its_attention_once_and_the_base_per_step() -> None:
    length, budget = 20000, 8192
    chunks, done = [], 0
    while done < length:
        c = min(budget, length - done)
        chunks.append(chunk_squared_tokens(done, c))
        done += c
    assert sum(chunks) == length * length
    model = PrefillModel(PROFILE, token_budget=budget)
    model.enqueue(EngineRequest(0, 0.0, length, 2), 0.0)
    ends = _run_all(model)
    expected = sum(physics.prefill_latency_from_sums_s(PROFILE, n, s2, 1980, k) for n, s2, k in model.batch_log)
    assert ends[-1][0] == pytest.approx(expected, rel=1e-12)
    assert len(ends) == 3
    unchunked = physics.prefill_latency_from_sums_s(PROFILE, length, length * length, 1980)
    assert ends[-1][0] > unchunked  # two more step overheads, same token and attention work


def test_a_request_arriving_during_a_step_waits_for_the_next_one() -> None:
    model = PrefillModel(PROFILE, token_budget=8192)
    model.enqueue(EngineRequest(0, 0.0, 500, 2), 0.0)
    assert model.start_step(0.0)
    model.enqueue(EngineRequest(1, 0.001, 500, 2), 0.001)
    assert [r.request_id for r in model.step] == [0]
    assert model.waiting_count == 1
    step_s = model.step_latency_s(1980)
    assert [r.request_id for r in model.finish_step(step_s, step_s)] == [0]
    assert model.start_step(step_s)
    assert [r.request_id for r in model.step] == [1]


def test_the_recorder_gets_queue_prefill_and_first_token_times_of_a_chunked_request() -> None:
    recorder = MetricsRecorder(dialect_for("vllm"), PROFILE.kv_capacity_tokens)
    model = PrefillModel(PROFILE, token_budget=1000, recorder=recorder)
    model.enqueue(EngineRequest(0, 0.0, 1500, 2), 0.0)
    ends = _run_all(model, start_s=0.5)  # the engine was busy elsewhere until 0.5 s
    sample = recorder.sample()
    assert sample.queue_time is not None
    assert sample.queue_time.sum == pytest.approx(0.5)
    assert sample.prefill_time is not None
    assert sample.prefill_time.sum == pytest.approx(ends[-1][0] - 0.5)
    assert sample.ttft is not None
    assert sample.ttft.sum == pytest.approx(ends[-1][0])
    assert sample.iteration_tokens is not None
    assert sample.iteration_tokens.count == 2
    assert (sample.prompt_tokens_total, sample.generation_tokens_total) == (1500, 1)


@pytest.mark.parametrize("ahead", [False, True])
def test_scheduling_ahead_fixes_the_next_step_at_the_running_steps_start(ahead: bool) -> None:
    """vLLM's async scheduling (and SGLang's overlap scheduler) decide step N+1 as step N starts:
    a prompt arriving during step N cannot join N+1 even where it has room, and waits for N+2.
    Deciding at each step's start, it joins N+1."""
    model: PrefillModel[EngineRequest] = PrefillModel(PROFILE, token_budget=1000, schedules_ahead=ahead)
    model.enqueue(EngineRequest(0, 0.0, 1500, 10), 0.0)
    assert model.start_step(0.0)  # step 1: 1000 tokens of request 0
    assert [(r.request_id, done, chunk) for r, done, chunk in model.next_step] == ([(0, 1000, 500)] if ahead else [])
    model.enqueue(EngineRequest(1, 0.01, 200, 10), 0.01)  # arrives while step 1 runs
    model.finish_step(0.1, 0.1)
    assert model.start_step(0.1)  # step 2: the rest of request 0, and request 1 unless decided before it came
    assert [r.request_id for r in model.step] == ([0] if ahead else [0, 1])
    assert model.step_tokens == (500 if ahead else 700)
    assert [(r.request_id, done, chunk) for r, done, chunk in model.next_step] == ([(1, 0, 200)] if ahead else [])
    model.finish_step(0.2, 0.1)
    assert model.start_step(0.2) is ahead  # step 3: request 1, decided at step 2's start
    if ahead:
        assert [r.request_id for r in model.finish_step(0.25, 0.05)] == [1]
    assert not model.start_step(0.3)
    assert not model.next_step
