"""The Prometheus text parser and the engine adapters on the shared engine-metrics samples and on
bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.engines.sample import EngineSample
from joulescale_agent.engines import MetricsPage, adapter_for, parse_page
from joulescale_agent.engines.promtext import DEFAULT_LIMITS, parse_labels
from joulescale_agent.engines.reader import PageReader
from joulescale_agent.errors import MetricsFormatError, MetricsLimitError

from .hostile_pages import ACCEPTED, BASES, Hostile, corpus

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


# --- hostile pages: every one is refused with MetricsFormatError, never another exception ---

HOSTILE = corpus()


@pytest.mark.parametrize("hostile", HOSTILE, ids=[f"{h.engine}: {h.name}" for h in HOSTILE])
def test_every_hostile_page_is_refused_with_a_metrics_format_error(hostile: Hostile) -> None:
    reader = PageReader(adapter_for(hostile.engine), budget_s=30.0)  # the budget has its own test
    if hostile.name in ACCEPTED:  # read on purpose: the same sample as the page without it
        assert reader.read(hostile.page).sample == reader.read(BASES[hostile.engine]).sample
        return
    with pytest.raises(MetricsFormatError):
        reader.read(hostile.page)


def test_the_corpus_covers_both_engines_and_the_classes_of_the_issue() -> None:
    names = {h.name for h in HOSTILE}
    assert {h.engine for h in HOSTILE} == {"vllm", "sglang"}
    assert len(HOSTILE) >= 80
    for must in ("4 MB page, one huge label", "gzip bytes", "invalid UTF-8 in a label", "HTML error page"):
        assert must in names


def _assert_sane(sample: EngineSample) -> None:
    assert 0 <= sample.running_requests <= 1_000_000
    assert 0 <= sample.waiting_requests <= 1_000_000
    values = [
        sample.kv_cache_usage,
        sample.prompt_tokens_total,
        sample.generation_tokens_total,
        sample.preemptions_total,
        sample.iterations_total,
    ]
    for value in values:
        assert value is None or (math.isfinite(value) and value >= 0)
    if sample.kv_cache_usage is not None:
        assert sample.kv_cache_usage <= 1.0
    for histogram in (sample.ttft, sample.inter_token_latency, sample.queue_time):
        if histogram is not None:
            assert math.isfinite(histogram.count)
            assert math.isfinite(histogram.sum)
            assert histogram.count >= 0
            assert histogram.sum >= 0


def test_a_long_line_of_an_unused_family_is_skipped_and_counted_and_the_page_still_reads() -> None:
    page = (
        VLLM_SAMPLE.read_text() + 'python_info{junk="' + "x" * (DEFAULT_LIMITS.max_line_chars + 1) + '"} 1\n'
    )
    read = PageReader(adapter_for("vllm"), budget_s=30.0).read(page)
    assert read.skipped_lines == 1
    assert (read.sample.running_requests, read.sample.waiting_requests) == (4, 2)


def test_over_limit_labels_of_an_unused_family_are_skipped_but_refuse_a_used_family() -> None:
    many = ",".join(f'l{i}="v"' for i in range(DEFAULT_LIMITS.max_labels + 1))
    read = PageReader(adapter_for("vllm"), budget_s=30.0).read(
        VLLM_SAMPLE.read_text() + f"noise{{{many}}} 1\n"
    )
    assert read.skipped_lines == 1
    with pytest.raises(MetricsLimitError, match="vllm:num_requests_waiting"):
        parse_page(OLD_VLLM + f"vllm:num_requests_waiting{{{many}}} 1\n").total("vllm:num_requests_waiting")


@pytest.mark.parametrize(
    "raw",
    ['a="1",a="2"', 'a="\\q"', 'a="open', "a=1", 'a="1" b="2"', '{a="1"}', ",", 'a="1",,b="2"'],
)
def test_malformed_label_texts_are_format_errors(raw: str) -> None:
    with pytest.raises(MetricsFormatError):
        parse_labels(raw)


def test_label_texts_of_the_format_are_read_with_their_escapes() -> None:
    assert parse_labels('a="x\\\\y\\n\\"z\\"" , b = "2",') == {"a": 'x\\y\n"z"', "b": "2"}
    assert parse_labels("") == {}


class StepClock:
    """A clock that moves ``step_s`` each time it is read."""

    def __init__(self, step_s: float) -> None:
        self.now_s, self.step_s, self.reads = 0.0, step_s, 0

    def __call__(self) -> float:
        self.now_s += self.step_s
        self.reads += 1
        return self.now_s


def test_a_page_over_its_time_budget_is_refused_as_a_limit() -> None:
    reader = PageReader(adapter_for("vllm"), budget_s=0.5, clock=StepClock(1.0))
    with pytest.raises(MetricsLimitError, match="budget"):
        reader.read(VLLM_SAMPLE.read_text())


def test_a_large_page_is_parsed_in_chunks_and_the_deadline_is_checked_between_them() -> None:
    clock = StepClock(0.0)
    reader = PageReader(adapter_for("vllm"), budget_s=1.0, clock=clock)
    pad = "p" * 40
    big = VLLM_SAMPLE.read_text() + "".join(f'noise{{i="{i}",pad="{pad}"}} {i}\n' for i in range(40_000))
    assert reader.read(big).sample.running_requests == 4
    assert len(big) > 5 * DEFAULT_LIMITS.chunk_chars
    assert clock.reads > len(big) // DEFAULT_LIMITS.chunk_chars


def test_a_page_of_more_samples_than_the_limit_is_refused_before_they_are_grouped() -> None:
    many = "".join(f"f{i} 1\n" for i in range(DEFAULT_LIMITS.max_samples + 1))
    with pytest.raises(MetricsLimitError, match="samples"):
        parse_page(many)


def test_a_parser_bug_is_mapped_to_a_format_error_at_the_reader() -> None:
    class Broken:
        name = "broken"

        def sample(self, page: MetricsPage) -> EngineSample:
            raise RecursionError("maximum recursion depth exceeded")

    with pytest.raises(MetricsFormatError, match="RecursionError"):
        PageReader(Broken(), budget_s=1.0).read(VLLM_SAMPLE.read_text())


# --- property-based: whatever the bytes, a sane sample or a MetricsFormatError ---

LINES = VLLM_SAMPLE.read_text().splitlines() + SGLANG_SAMPLE.read_text().splitlines()
NUMBERS = st.sampled_from(["NaN", "+Inf", "-Inf", "-1", "1e308", "1e999", "0x1", "1_0", "", "4.0", "-0"])


@st.composite
def mutated_pages(draw: st.DrawFn) -> str:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "drop", "dup", "insert", "cut", "swap"]))
        line = lines[at]
        if kind == "value" and " " in line:
            lines[at] = line.rsplit(" ", 1)[0] + " " + draw(NUMBERS)
        elif kind == "drop":
            del lines[at]
        elif kind == "dup":
            lines.insert(at, line)
        elif kind == "insert":
            lines.insert(at, draw(st.text(max_size=80)))
        elif kind == "cut":
            lines[at] = line[: draw(st.integers(0, len(line)))]
        else:
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None)
@given(page=mutated_pages(), engine=st.sampled_from(["vllm", "sglang"]))
def test_mutated_real_pages_give_a_sane_sample_or_a_format_error(page: str, engine: str) -> None:
    try:
        read = PageReader(adapter_for(engine), budget_s=30.0).read(page)
    except MetricsFormatError:
        return
    _assert_sane(read.sample)


@settings(max_examples=150, deadline=None)
@given(page=st.binary(max_size=2000) | st.text(max_size=2000))
def test_arbitrary_bytes_or_text_give_a_format_error_never_another_exception(page: bytes | str) -> None:
    try:
        read = PageReader(adapter_for("vllm"), budget_s=30.0).read(page)
    except MetricsFormatError:
        return
    _assert_sane(read.sample)
