"""``joulescale twin steady`` against ML.ENERGY's published steady-state figures, and what makes
its figures a measurement (energy, time and tokens of one window of a real run)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest

from bench.mlenergy_calibration import PUBLISHED, PUBLISHED_MEDIAN_ITL_MS
from joulescale.cli import main
from joulescale.profiles import load_profile
from joulescale.twin.steady import SteadySettings, measure_steady

TP4 = load_profile("h100-sxm-llama-70b-tp4")
CHECKED = (32, 64, 128, 256)
BY_SEQS = {p.max_num_seqs: p for p in PUBLISHED}


ALL_SIZES = tuple(p.max_num_seqs for p in PUBLISHED)


@pytest.mark.parametrize("max_num_seqs", ALL_SIZES)
def test_watts_per_gpu_at_max_clock_are_within_10_percent_of_ml_energy(max_num_seqs: int) -> None:
    result = measure_steady(SteadySettings(TP4, max_num_seqs))
    assert result.clock_mhz == TP4.max_sm_clock_mhz
    assert result.mix == "lmarena-chat"
    assert result.watts_per_gpu == pytest.approx(BY_SEQS[max_num_seqs].watts_per_gpu, rel=0.10)


@pytest.mark.parametrize("max_num_seqs", ALL_SIZES)
def test_joules_per_output_token_at_max_clock_are_within_15_percent_of_ml_energy(max_num_seqs: int) -> None:
    """The acceptance check (32-256) and the other published sizes. J per token is fitted by
    nothing: the step overhead comes from the median ITL, the decode power from W per GPU."""
    result = measure_steady(SteadySettings(TP4, max_num_seqs))
    assert result.joules_per_output_token == pytest.approx(BY_SEQS[max_num_seqs].joules_per_output_token, rel=0.15)


@pytest.mark.parametrize("max_num_seqs", sorted(PUBLISHED_MEDIAN_ITL_MS))
def test_the_median_inter_token_latency_is_ml_energys(max_num_seqs: int) -> None:
    """The profile holds its calibration: the twin's median step over a window, counted per
    decode token, is the published median ITL within the line's residual (0.5 ms)."""
    result = measure_steady(SteadySettings(TP4, max_num_seqs))
    assert result.median_itl_s * 1000.0 == pytest.approx(PUBLISHED_MEDIAN_ITL_MS[max_num_seqs], abs=0.6)


@pytest.mark.parametrize("max_num_seqs", [128, 256])
def test_without_the_step_overhead_the_twin_makes_tokens_too_fast(max_num_seqs: int) -> None:
    """The cause the overhead removes: the kernel database's steps alone are shorter than
    ML.ENERGY's, so tokens per second exceed the published ones (4 GPUs x W / J) by over 15 %."""
    bare = TP4.model_copy(update={"step_overhead": None})
    published = BY_SEQS[max_num_seqs]
    published_tokens_per_second = TP4.tensor_parallel_size * published.watts_per_gpu / published.joules_per_output_token
    assert measure_steady(SteadySettings(bare, max_num_seqs)).output_tokens_per_second > \
        1.15 * published_tokens_per_second
    assert measure_steady(SteadySettings(TP4, max_num_seqs)).output_tokens_per_second == pytest.approx(
        published_tokens_per_second, rel=0.10)


@pytest.mark.parametrize("max_num_seqs", CHECKED)
def test_azure_conversation_lengths_cost_more_per_token_than_ml_energys_task(max_num_seqs: int) -> None:
    """Five times more prompt per output token (1155 / 211 against 212 / 359): prefill, near the
    board limit, takes a larger share of every step. This was the twin's 1.4-2.3x gap."""
    arena = measure_steady(SteadySettings(TP4, max_num_seqs))
    azure = measure_steady(SteadySettings(TP4, max_num_seqs, mix="azure-conv"))
    assert azure.joules_per_output_token > 1.5 * arena.joules_per_output_token
    assert azure.watts_per_gpu > arena.watts_per_gpu


def _decode_only_trace(folder: Path) -> str:
    """One-token prompts and 300-token answers: every step is (nearly) all decode."""
    path = folder / "decode-only.jsonl"
    path.write_text("".join(json.dumps({"timestamp": i * 100, "input_length": 1, "output_length": 300}) + "\n"
                            for i in range(50)), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("max_num_seqs", CHECKED)
def test_a_decode_only_workload_draws_ml_energys_watts_through_the_whole_power_path(
        max_num_seqs: int, tmp_path: Path) -> None:
    """The fitted curve reaches the measurement: engine model steps -> step power at the step's
    batch -> energy over the window. Not the calibration itself (another workload), its plumbing."""
    result = measure_steady(SteadySettings(TP4, max_num_seqs, mix=_decode_only_trace(tmp_path)))
    assert result.mean_batch == pytest.approx(max_num_seqs, rel=0.02)
    assert result.watts_per_gpu == pytest.approx(BY_SEQS[max_num_seqs].watts_per_gpu, rel=0.10)


def test_the_figures_are_one_window_of_energy_time_and_tokens() -> None:
    result = measure_steady(SteadySettings(TP4, 64))
    assert result.joules_per_output_token * result.output_tokens == pytest.approx(result.energy_j)
    assert result.watts_per_gpu * TP4.tensor_parallel_size * result.window_s == pytest.approx(result.energy_j)
    assert result.output_tokens_per_second * result.window_s == pytest.approx(result.output_tokens)
    assert result.mean_batch == pytest.approx(64, rel=0.02)  # kept full


def test_a_lower_clock_draws_less_power_and_produces_fewer_tokens_per_second() -> None:
    top = measure_steady(SteadySettings(TP4, 128))
    low = measure_steady(SteadySettings(TP4, 128, clock_mhz=1200))
    assert low.watts_per_gpu < top.watts_per_gpu
    assert low.output_tokens_per_second < top.output_tokens_per_second


def test_more_sequences_draw_more_power_and_cost_less_energy_per_token() -> None:
    results = [measure_steady(SteadySettings(TP4, n)) for n in (16, 64, 256)]
    watts = [r.watts_per_gpu for r in results]
    joules = [r.joules_per_output_token for r in results]
    assert watts == sorted(watts)
    assert joules == sorted(joules, reverse=True)


def test_a_full_kv_cache_runs_fewer_sequences_than_allowed() -> None:
    """Azure's long conversations fill the 456k-token cache long before 1024 sequences."""
    result = measure_steady(SteadySettings(TP4, 1024, mix="azure-conv", measured_completions=1500))
    assert result.mean_batch < 0.5 * 1024


def test_the_warm_up_is_excluded_from_the_window() -> None:
    """All sequences start together, so the first steps are pure prefill; counting them from the
    start gives other figures than the steady window."""
    cold = measure_steady(SteadySettings(TP4, 128, warmup_completions=0, measured_completions=128))
    warm = measure_steady(SteadySettings(TP4, 128, measured_completions=128))
    assert cold.joules_per_output_token != pytest.approx(warm.joules_per_output_token, rel=0.02)


def test_the_command_prints_the_figures_and_writes_the_json_keys(tmp_path: Path) -> None:
    out = StringIO()
    target = tmp_path / "steady.json"
    code = main(["twin", "steady", "--profile", "h100-sxm-llama-70b-tp4", "--topology", "aggregated",
                 "--max-num-seqs", "32", "--json", str(target)], out=out)
    assert code == 0
    document = json.loads(target.read_text(encoding="utf-8"))
    expected = measure_steady(SteadySettings(TP4, 32))
    assert document["joules_per_output_token"] == pytest.approx(expected.joules_per_output_token)
    assert document["watts_per_gpu"] == pytest.approx(expected.watts_per_gpu)
    assert document["output_tokens_per_second"] == pytest.approx(expected.output_tokens_per_second)
    assert document["median_itl_ms"] == pytest.approx(1000.0 * expected.median_itl_s)
    text = out.getvalue()
    for label in ("J per output token", "W per GPU", "output tokens per s", "median inter-token latency"):
        assert label in text


def test_an_unsupported_clock_is_a_usage_error() -> None:
    err = StringIO()
    assert main(["twin", "steady", "--max-num-seqs", "8", "--clock-mhz", "1234"], out=StringIO(), err=err) == 2
    assert "1234 MHz" in err.getvalue()
