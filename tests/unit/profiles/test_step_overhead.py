"""The step overhead: engine time per step beyond the kernels, the same at every clock, counted
once in every step of every engine model, at the power its GPU busy share says; a profile
without it has none, and ``profile generate --overhead-from`` moves it between profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from joulescale.engines.model import AggregatedModel, DecodeModel, PrefillModel
from joulescale.engines.model.request import EngineRequest
from joulescale.profiles import load_profile
from joulescale.profiles import physics as ph
from joulescale.profiles.hardware import hardware_of, with_overhead_of
from joulescale.profiles.model import GpuProfile, StepOverhead
from joulescale.twin.gpu import SimGpuGroup

TP4 = load_profile("h100-sxm-llama-70b-tp4")
F_MAX = TP4.max_sm_clock_mhz
LOW = 990


def _with(profile: GpuProfile, fixed_ms: float, per_sequence_ms: float, share: float) -> GpuProfile:
    return profile.model_copy(update={"step_overhead": StepOverhead(
        fixed_ms=fixed_ms, per_sequence_ms=per_sequence_ms, gpu_busy_share=share)})


HOST = _with(TP4, 2.0, 0.05, 0.0)
"""All of the overhead on the host, the GPU idle meanwhile."""
BARE = TP4.model_copy(update={"step_overhead": None})


def test_a_profile_without_the_block_has_no_overhead() -> None:
    assert BARE.step_overhead is None
    assert ph.step_overhead_s(BARE, 256) == 0.0
    assert ph.decode_latency_s(BARE, 64, 64_000, F_MAX) == ph.decode_gpu_s(BARE, 64, 64_000, F_MAX)
    assert ph.prefill_latency_s(BARE, [2048], F_MAX) == ph.prefill_gpu_s(BARE, 2048, 2048**2, F_MAX, 1)


@pytest.mark.parametrize("clock", [F_MAX, LOW, TP4.min_sm_clock_mhz])
def test_the_overhead_is_fixed_plus_per_sequence_and_no_clock_stretches_it(clock: int) -> None:
    assert ph.step_overhead_s(HOST, 100) == pytest.approx((2.0 + 0.05 * 100) / 1000)
    assert ph.decode_latency_s(HOST, 100, 100_000, clock) - ph.decode_gpu_s(HOST, 100, 100_000, clock) == \
        pytest.approx(0.007)
    assert ph.decode_gpu_s(HOST, 100, 100_000, clock) == ph.decode_gpu_s(BARE, 100, 100_000, clock)
    # A prefill step of 3 prompts pays 3 sequences' worth.
    assert ph.prefill_latency_s(HOST, [500, 500, 500], clock) - ph.prefill_latency_s(BARE, [500, 500, 500], clock) \
        == pytest.approx(0.00215)


def test_a_mixed_step_pays_the_overhead_once_for_its_decodes_and_prompts() -> None:
    decode_s, prefill_s, overhead_s = ph.mixed_step_times_s(HOST, 32, 32_000, 1024, 1024**2, F_MAX, 2)
    assert overhead_s == pytest.approx((2.0 + 0.05 * 34) / 1000)
    bare = ph.mixed_step_times_s(BARE, 32, 32_000, 1024, 1024**2, F_MAX, 2)
    assert (decode_s, prefill_s, 0.0) == bare
    # The two-part form (the control path's) keeps the sum and puts the overhead with the decodes.
    assert ph.mixed_step_parts_s(HOST, 32, 32_000, 1024, 1024**2, F_MAX, 2) == pytest.approx(
        (decode_s + overhead_s, prefill_s))


def test_an_idle_overhead_draws_idle_power_and_a_busy_one_the_steps_power() -> None:
    gpu_s = ph.decode_gpu_s(HOST, 64, 64_000, F_MAX)
    overhead_s = ph.step_overhead_s(HOST, 64)
    busy = ph.busy_power_watts(HOST, "decode", F_MAX, 64)
    idle_mean = ph.step_power_watts(HOST, gpu_s, 0.0, overhead_s, F_MAX, 64, 0)
    assert idle_mean == pytest.approx((busy * gpu_s + TP4.idle_power_watts * overhead_s) / (gpu_s + overhead_s))
    busy_share = _with(TP4, 2.0, 0.05, 1.0)
    assert ph.step_power_watts(busy_share, gpu_s, 0.0, overhead_s, F_MAX, 64, 0) == pytest.approx(busy)
    half = _with(TP4, 2.0, 0.05, 0.5)
    assert ph.step_power_watts(half, gpu_s, 0.0, overhead_s, F_MAX, 64, 0) == pytest.approx(
        (busy * (gpu_s + overhead_s / 2) + TP4.idle_power_watts * overhead_s / 2) / (gpu_s + overhead_s))


def test_every_engine_model_adds_the_overhead_and_prices_it_once() -> None:
    prefill: PrefillModel[EngineRequest] = PrefillModel(HOST, 8192)
    prefill.enqueue(EngineRequest(0, 0.0, 1000, 10), 0.0)
    assert prefill.start_step(0.0)
    assert prefill.step_latency_s(F_MAX) == pytest.approx(ph.prefill_latency_s(BARE, [1000], F_MAX) + 0.00205)
    decode: DecodeModel[EngineRequest] = DecodeModel(HOST, TP4.kv_capacity_tokens, 256, 0.01)
    for i in range(8):
        decode.enqueue(EngineRequest(i, 0.0, 100, 50), 0.0)
    assert decode.start_step(0.0)
    assert decode.step_latency_s(F_MAX) == pytest.approx(ph.decode_latency_s(BARE, 8, 8 * 101, F_MAX) + 0.0024)
    aggregated: AggregatedModel[EngineRequest] = AggregatedModel(HOST, 8192, TP4.kv_capacity_tokens, 256, 0.01)
    aggregated.enqueue(EngineRequest(0, 0.0, 300, 50), 0.0)
    assert aggregated.start_step(0.0)
    assert aggregated.step_latency_s(F_MAX) == pytest.approx(ph.prefill_latency_s(BARE, [300], F_MAX) + 0.00205)
    for model in (prefill, decode, aggregated):
        assert model.step_power_watts(F_MAX) < ph.busy_power_watts(HOST, "decode" if model is decode else "prefill",
                                                                    F_MAX, 1 if model is not decode else 8)


def test_the_twins_gpu_books_the_idle_overhead_at_idle_power() -> None:
    decode: DecodeModel[EngineRequest] = DecodeModel(HOST, TP4.kv_capacity_tokens, 256, 0.01)
    for i in range(16):
        decode.enqueue(EngineRequest(i, 0.0, 500, 100), 0.0)
    assert decode.start_step(0.0)
    gpu = SimGpuGroup(HOST, "decode", F_MAX, 0.05)
    step_s = gpu.run(0.0, decode.step_latency_s, 16, decode.step_power_watts)
    gpu_s = ph.decode_gpu_s(HOST, 16, 16 * 501, F_MAX)
    assert step_s == pytest.approx(gpu_s + ph.step_overhead_s(HOST, 16))
    expected = TP4.tensor_parallel_size * (ph.busy_power_watts(HOST, "decode", F_MAX, 16) * gpu_s
                                           + TP4.idle_power_watts * ph.step_overhead_s(HOST, 16))
    assert gpu.busy_energy_j == pytest.approx(expected)
    assert ph.overhead_idles(HOST)
    assert not ph.overhead_idles(TP4)
    assert not ph.overhead_idles(BARE)


def test_overhead_from_moves_the_block_and_its_source_between_profiles(tmp_path: Path) -> None:
    tp8 = hardware_of(load_profile("h100-sxm-llama-70b-tp8"))
    taken = with_overhead_of(tp8, "h100-sxm-llama-70b-tp4")
    assert taken.step_overhead == TP4.step_overhead
    assert [s.fields for s in taken.source if "step_overhead" in s.fields] == ["step_overhead"]
    removed = with_overhead_of(taken, "none")
    assert removed.step_overhead is None
    assert not [s for s in removed.source if "step_overhead" in s.fields]
    bare_file = tmp_path / "bare.yaml"
    bare_file.write_text(yaml.safe_dump(BARE.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    with pytest.raises(ValueError, match="no step_overhead"):
        with_overhead_of(tp8, str(bare_file))
