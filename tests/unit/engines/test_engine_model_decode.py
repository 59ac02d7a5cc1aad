"""The core decode model: admission under the watermark and preemption by recompute."""

from __future__ import annotations

from joulescale.engines import dialect_for
from joulescale.engines.model import DecodeModel, EngineRequest
from joulescale.engines.recorder import MetricsRecorder
from joulescale.profiles import load_profile

PROFILE = load_profile("h100-sxm-llama-70b-tp4")


def _step(model: DecodeModel, now_s: float) -> tuple[float, list[EngineRequest]]:
    step_s = model.step_latency_s(1980)
    return now_s + step_s, model.finish_step(now_s + step_s, step_s)


def test_admission_stops_at_the_watermark_and_max_running() -> None:
    model = DecodeModel(PROFILE, kv_capacity_tokens=100, max_running=2, watermark=0.0)
    for i in range(3):
        model.enqueue(EngineRequest(i, 0.0, 40, 5), 0.0)
    assert model.start_step(0.0)
    assert list(model.running) == [0, 1]
    assert len(model.waiting) == 1
    wide = DecodeModel(PROFILE, kv_capacity_tokens=100, max_running=8, watermark=0.0)
    for i in range(3):
        wide.enqueue(EngineRequest(i, 0.0, 40, 5), 0.0)
    assert wide.start_step(0.0)
    assert list(wide.running) == [0, 1]  # a third 41-token context would pass 100 tokens


def test_the_newest_request_is_preempted_and_recomputed_when_readmitted() -> None:
    recorder = MetricsRecorder(dialect_for("vllm"), 100)
    model = DecodeModel(PROFILE, kv_capacity_tokens=100, max_running=8, watermark=0.0, recorder=recorder)
    a, b = EngineRequest(0, 0.0, 40, 30), EngineRequest(1, 0.0, 40, 30)
    model.enqueue(a, 0.0)
    model.enqueue(b, 0.0)
    now_s = 0.0
    finished: list[EngineRequest] = []
    while model.start_step(now_s):
        now_s, done = _step(model, now_s)
        finished += done
    assert [r.request_id for r in finished] == [0, 1]
    assert (a.preemptions, b.preemptions) == (0, 1)
    # K = 82 + 2n grows past 100 - 2 at n = 9: b had 9 tokens; readmitted alone after a ends,
    # its context of 40 + 1 + 9 tokens is prefilled again in that step.
    recomputes = [(batch, recompute) for batch, _, recompute, _ in model.iteration_log if recompute]
    assert recomputes == [(1, 50)]
    assert b.decode_done_tokens == 9
    sample = recorder.sample()
    assert sample.preemptions_total == 1
    assert sample.generation_tokens_total == 2 * 29
    # One first token each, and one inter-token latency per other token (b's resume counts once).
    assert sample.ttft is not None
    assert sample.ttft.count == 2
    assert sample.inter_token_latency is not None
    assert sample.inter_token_latency.count == 2 * 28
