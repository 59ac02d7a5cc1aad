"""The Prometheus text parser and the engine adapters on the shared engine-metrics samples and on
bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from joulescale_agent.engines import adapter_for, parse_page
from joulescale_agent.errors import MetricsFormatError

DATA = Path(__file__).resolve().parents[2] / "fixtures" / "engine-metrics"
VLLM_SAMPLE = DATA / "vllm_v1_metrics_sample.prom"
SGLANG_SAMPLE = DATA / "sglang_metrics_sample.prom"


def _page(path: Path) -> str:
    return path.read_text()


def test_vllm_sample_becomes_a_sample_with_every_concept() -> None:
    sample = adapter_for("vllm").sample(parse_page(_page(VLLM_SAMPLE)))
    assert (sample.running_requests, sample.waiting_requests) == (4, 2)
    assert sample.kv_cache_usage == pytest.approx(0.4219)
    assert sample.kv_capacity_tokens == 28000 * 16
    assert sample.prompt_tokens_total == 2_097_152
    assert sample.generation_tokens_total == 524_288
    assert sample.iterations_total == 191_300
    assert sample.inter_token_latency is not None
    assert sample.inter_token_latency.count == 522_885
    assert sample.inter_token_latency.buckets[0.025] == 470_000
    assert sample.ttft is not None
    assert sample.ttft.buckets[math.inf] == 1023


def test_sglang_sample_reads_rank_zero_scheduler_gauges() -> None:
    sample = adapter_for("sglang").sample(parse_page(_page(SGLANG_SAMPLE)))
    assert (sample.running_requests, sample.waiting_requests) == (162, 2826)
    assert sample.kv_cache_usage == pytest.approx(0.28)
    assert sample.kv_capacity_tokens == round(123859 / 0.28)
    assert sample.inter_token_latency is not None
    assert sample.inter_token_latency.count == 7_314_757


OLD_VLLM = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3.0
vllm:num_requests_waiting{model_name="m"} 0.0
vllm:gpu_cache_usage_perc{model_name="m"} 0.5
vllm:time_per_output_token_seconds_count{model_name="m"} 10.0
vllm:time_per_output_token_seconds_sum{model_name="m"} 0.25
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="m"} 10.0
"""


def test_renamed_metrics_of_older_vllm_are_found_through_the_fallback_chain() -> None:
    sample = adapter_for("vllm").sample(parse_page(OLD_VLLM))
    assert sample.kv_cache_usage == 0.5
    assert sample.inter_token_latency is not None
    assert sample.inter_token_latency.mean == pytest.approx(0.025)
    assert sample.prompt_tokens_total is None


def test_series_of_data_parallel_engines_are_summed() -> None:
    page = parse_page(
        'vllm:num_requests_running{engine="0"} 2\nvllm:num_requests_running{engine="1"} 5\n'
        'vllm:num_requests_waiting{engine="0"} 1\nvllm:num_requests_waiting{engine="1"} 0\n'
    )
    sample = adapter_for("vllm").sample(page)
    assert (sample.running_requests, sample.waiting_requests) == (7, 1)


def test_labels_with_escaped_quotes_braces_and_spaces_do_not_confuse_the_parser() -> None:
    page = parse_page('x{a="say \\"hi\\" {now}",b="1 2"} 4.5 1700000000\n')
    assert page.series("x") == [({"a": 'say "hi" {now}', "b": "1 2"}, 4.5)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n", "HTML"),
        ("", "empty"),
        ('vllm:num_requests_running{model_name="m"} 3.0\nvllm:num_requests_wai', "truncated"),
        ("vllm:num_requests_running 1\n<p>oops</p>\n", "not a sample"),
        ("# only comments\n", "no samples"),
    ],
)
def test_bad_pages_raise_a_clear_format_error(text: str, message: str) -> None:
    with pytest.raises(MetricsFormatError, match=message):
        parse_page(text)


def test_a_page_missing_the_required_families_is_rejected_by_name() -> None:
    with pytest.raises(MetricsFormatError, match="vllm:num_requests_running"):
        adapter_for("vllm").sample(parse_page("vllm:kv_cache_usage_perc 0.1\n"))


def test_a_non_numeric_value_is_rejected_when_read() -> None:
    page = parse_page("vllm:num_requests_running abc\nvllm:num_requests_waiting 0\n")
    with pytest.raises(MetricsFormatError, match="non-numeric"):
        adapter_for("vllm").sample(page)


def test_a_family_split_across_the_page_is_merged() -> None:
    page = parse_page('a 1\nb 2\na{x="1"} 3\n# TYPE c gauge\n\nc 4\n')
    assert page.total("a") == 4
    assert page.total("c") == 4


def test_nan_in_a_used_gauge_is_rejected() -> None:
    page = parse_page("vllm:num_requests_running NaN\nvllm:num_requests_waiting 0\n")
    with pytest.raises(MetricsFormatError, match="nan"):
        adapter_for("vllm").sample(page)


def test_unknown_engine_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="tgi"):
        adapter_for("tgi")
