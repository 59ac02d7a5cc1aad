"""Trace windows: scaling keeps every request's lengths and divides its arrival gaps; files in
any row order load sorted with each request still naming its source line."""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.twin import limits
from joulescale.twin.trace_rows import jsonl_row
from joulescale.twin.traces import (
    Trace,
    TraceError,
    check_replayable,
    load_trace,
    parse_azure_csv,
    parse_jsonl,
    scaled_window,
)

FAST = settings(max_examples=40, deadline=None)
_ROWS = st.lists(st.tuples(st.integers(0, 60_000), st.integers(1, 9000), st.integers(1, 900)), min_size=2,
                 max_size=40, unique_by=lambda row: row[0])


def _jsonl(rows: list[tuple[int, int, int]]) -> str:
    return "".join(json.dumps({"timestamp": t, "input_length": i, "output_length": o}) + "\n" for t, i, o in rows)


def _trace(rows: list[tuple[int, int, int]]) -> Trace:
    return parse_jsonl(_jsonl(rows), "generated.jsonl")


@FAST
@given(rows=_ROWS, seed=st.integers(0, 1000))
def test_rows_in_any_order_load_sorted_and_each_request_names_its_line(rows: list[tuple[int, int, int]],
                                                                       seed: int) -> None:
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    trace = _trace(shuffled)
    arrivals = [r.arrival_s for r in trace.requests]
    assert arrivals == sorted(arrivals)
    assert arrivals[0] == 0.0
    first_ms = min(t for t, _, _ in rows)
    for request, line in zip(trace.requests, trace.lines, strict=True):
        t, i, o = shuffled[line - 1]
        assert (request.prompt_tokens, request.output_tokens) == (i, o)
        assert request.arrival_s == pytest.approx((t - first_ms) / 1000.0)
    assert trace.digest == _trace(sorted(shuffled)).digest  # the digest is of the requests, not the file order


def test_equal_timestamps_keep_the_file_order() -> None:
    trace = _trace([(500, 7, 1), (0, 1, 1), (500, 3, 1), (500, 5, 1)])
    assert [r.prompt_tokens for r in trace.requests] == [1, 7, 3, 5]
    assert trace.lines == (2, 1, 3, 4)


@FAST
@given(rows=_ROWS, scale=st.floats(0.1, 20.0), fraction=st.floats(0.05, 1.0), start_fraction=st.floats(0.0, 0.5))
def test_a_window_inside_the_trace_is_its_requests_with_gaps_divided_by_the_scale(
        rows: list[tuple[int, int, int]], scale: float, fraction: float, start_fraction: float) -> None:
    """Scaling keeps the length distribution (the very requests, in order) and multiplies the rate."""
    trace = _trace(rows)
    start_s = trace.duration_s * start_fraction
    source_s = (trace.duration_s - start_s) * fraction  # stays inside the trace: no tiling
    duration_s = source_s / scale
    if duration_s <= 0:
        return
    window = scaled_window(trace, scale, duration_s, start_s)
    end_s = start_s + duration_s * scale  # the window's end in trace time (as rounded by the caller's duration)
    source = [r for r in trace.requests if start_s <= r.arrival_s < end_s]
    assert [(r.prompt_tokens, r.output_tokens) for r in window] == [(r.prompt_tokens, r.output_tokens) for r in source]
    for got, original in zip(window, source, strict=True):
        assert got.arrival_s == pytest.approx((original.arrival_s - start_s) / scale, abs=1e-9)
        assert 0.0 <= got.arrival_s < duration_s + 1e-9


@FAST
@given(rows=_ROWS, repeats=st.integers(2, 5), scale=st.floats(0.5, 8.0))
def test_a_window_longer_than_the_trace_tiles_it_whole(rows: list[tuple[int, int, int]], repeats: int,
                                                       scale: float) -> None:
    """Each tile is the whole trace, one mean gap after the previous one: lengths repeat exactly
    and the window's rate is the scale x the tiled trace's rate."""
    trace = _trace(rows)
    period = trace.duration_s + 1.0 / trace.requests_per_second
    window = scaled_window(trace, scale, (repeats - 0.5) * period / scale)
    lengths = Counter((r.prompt_tokens, r.output_tokens) for r in trace.requests)
    whole = Counter((r.prompt_tokens, r.output_tokens) for r in window[: (repeats - 1) * len(trace.requests)])
    assert whole == Counter({key: count * (repeats - 1) for key, count in lengths.items()})
    arrivals = [r.arrival_s for r in window]
    assert arrivals == sorted(arrivals)
    tile = len(trace.requests)
    assert window[tile].arrival_s == pytest.approx(period / scale)
    assert len(window) >= (repeats - 1) * tile


def test_the_shipped_trace_scaled_keeps_its_mean_lengths_and_multiplies_its_rate() -> None:
    trace = load_trace("azure-code")
    source_s = trace.duration_s / 2
    for scale in (0.5, 2.0, 7.5):
        window = scaled_window(trace, scale, source_s / scale)
        source = [r for r in trace.requests if r.arrival_s < source_s]
        assert len(window) == len(source)
        assert sum(r.prompt_tokens for r in window) == sum(r.prompt_tokens for r in source)
        assert sum(r.output_tokens for r in window) == sum(r.output_tokens for r in source)
        assert len(window) / (source_s / scale) == pytest.approx(scale * len(source) / source_s)


@pytest.mark.parametrize(("scale", "duration"), [(0.0, 10.0), (-1.0, 10.0), (1.0, 0.0), (1.0, -5.0)])
def test_a_window_needs_a_positive_scale_and_duration(scale: float, duration: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        scaled_window(load_trace("azure-code"), scale, duration)


def test_a_trace_that_cannot_be_replayed_is_refused_naming_the_line() -> None:
    trace = _trace([(0, 10, 5), (1000, 5000, 5), (2000, 10, 5000), (3000, 10, 5)])
    check_replayable(trace, 5000, 5010, "one instance")
    with pytest.raises(TraceError, match=r"generated.jsonl:2: 5000 prompt \+ 5 output tokens do not fit one inst"):
        check_replayable(trace, 4999, 100_000, "one instance")
    with pytest.raises(TraceError, match=r"generated.jsonl:3: 10 prompt \+ 5000 output"):
        check_replayable(trace, 5000, 5009, "one instance")
    same_instant = _trace([(100, 10, 5), (100, 12, 5)])
    assert same_instant.duration_s == 0.0
    assert same_instant.requests_per_second == 0.0
    with pytest.raises(TraceError, match="all 2 request"):
        check_replayable(same_instant, 5000, 5010, "one instance")


def test_a_trace_reports_its_rate_over_its_span() -> None:
    trace = _trace([(0, 10, 5), (1000, 10, 5), (4000, 10, 5)])
    assert trace.duration_s == 4.0
    assert trace.requests_per_second == 0.75
    assert not math.isnan(trace.requests_per_second)


def _azure_lines(count: int) -> str:
    """A header and ``count - 1`` rows: ``count`` newline-terminated lines."""
    return "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 {10 + k // 3600:02d}:{(k // 60) % 60:02d}:{k % 60:02d}.00,5,5\n" for k in range(count - 1))


def test_a_file_of_exactly_the_line_cap_loads_and_one_line_more_is_refused() -> None:
    """Found by these tests: a file of exactly 50 000 newline-terminated lines was refused as
    having "more than 50000 lines", naming a line 50 001 that it does not have."""
    cap = limits.MAX_TRACE_LINES
    assert len(parse_azure_csv(_azure_lines(cap), "cap.csv").requests) == cap - 1
    assert len(parse_azure_csv(_azure_lines(cap).rstrip("\n"), "cap.csv").requests) == cap - 1
    with pytest.raises(TraceError, match=f"over.csv:{cap + 1}: more than {cap} lines"):
        parse_azure_csv(_azure_lines(cap + 1), "over.csv")
    with pytest.raises(TraceError, match=f"over.csv:{cap + 1}: more than {cap} lines"):
        parse_azure_csv(_azure_lines(cap) + "2023-11-17 00:00:00.00,5,5", "over.csv")  # no final newline


def test_a_line_of_exactly_the_length_cap_is_read_and_one_character_more_is_refused() -> None:
    cap = limits.MAX_LINE_CHARS
    row = '{"timestamp": 1000, "input_length": 5, "output_length": 3}'
    padded = row[:-1] + " " * (cap - len(row)) + "}"
    assert len(padded) == cap
    assert len(parse_jsonl(_jsonl([(0, 5, 3)]) + padded + "\n", "pad.jsonl").requests) == 2
    with pytest.raises(TraceError, match=f"pad.jsonl:2: longer than {cap} characters"):
        parse_jsonl(_jsonl([(0, 5, 3)]) + " " + padded + "\n", "pad.jsonl")


def test_reading_stops_after_the_cap_on_reported_problems() -> None:
    bad = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "x,1,1\n" * (limits.MAX_REPORTED_PROBLEMS + 500)
    with pytest.raises(TraceError) as caught:
        parse_azure_csv(bad, "bad.csv")
    assert len(caught.value.problems) == limits.MAX_REPORTED_PROBLEMS
    assert str(caught.value).endswith(f"(and more: reading stopped after {limits.MAX_REPORTED_PROBLEMS} malformed rows)")
    assert caught.value.problems[0].startswith("line 2: ")


def test_azure_timestamps_keep_sub_second_digits_beyond_microseconds_truncated() -> None:
    text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
            "2023-11-16 18:15:46.1234567,5,5\n"
            "2023-11-16 18:15:47.5,6,6\n"
            "2023-11-16 18:15:48,7,7\n")
    trace = parse_azure_csv(text, "t.csv")
    assert [r.arrival_s for r in trace.requests] == pytest.approx([0.0, 1.376544, 1.876544], abs=4e-7)  # float epoch seconds: 2.4e-7 apart


def test_a_span_of_exactly_the_cap_is_accepted_and_a_longer_one_refused() -> None:
    span_ms = int(limits.MAX_TRACE_SPAN_S * 1000)
    assert _trace([(0, 5, 3), (span_ms, 5, 3)]).duration_s == limits.MAX_TRACE_SPAN_S
    with pytest.raises(TraceError, match=r"generated\.jsonl:2: the trace spans"):
        _trace([(0, 5, 3), (span_ms + 1, 5, 3)])


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "UTC"])
def test_azure_timestamps_mean_the_same_gaps_in_every_time_zone(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    """Found by these tests: naive trace timestamps were read in the machine's local time, so a
    trace spanning a daylight-saving change lost (or gained) an hour of arrivals on some
    machines, and a comparison's figures depended on where it ran."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                "2023-03-26 01:30:00.0,5,5\n"  # Europe's spring change is at 02:00 that night
                "2023-03-26 03:30:00.0,6,6\n"
                "2023-11-05 01:30:00.0,7,7\n"  # America's autumn change repeats 01:00-02:00
                "2023-11-05 02:30:00.0,8,8\n")
        arrivals = [r.arrival_s for r in parse_azure_csv(text, "dst.csv").requests]
    finally:
        monkeypatch.undo()
        time.tzset()
    assert arrivals[1] == 7200.0
    assert arrivals[3] - arrivals[2] == 3600.0
    assert arrivals[2] == (datetime(2023, 11, 5, 1, 30, tzinfo=UTC) - datetime(2023, 3, 26, 1, 30, tzinfo=UTC)).total_seconds()


def test_an_explicit_utc_offset_in_a_timestamp_is_honoured() -> None:
    text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
            "2023-11-16 18:00:00.0+00:00,5,5\n"
            "2023-11-16 19:30:00.0+01:00,6,6\n")
    assert [r.arrival_s for r in parse_azure_csv(text, "tz.csv").requests] == [0.0, 1800.0]


@FAST
@given(stamp=st.one_of(st.integers(0, 2**53), st.floats(0.0, 1e12)), prompt=st.integers(1, 5_000_000),
       output=st.integers(1, 5_000_000), extra=st.dictionaries(st.sampled_from(("hash_ids", "note", "model")),
                                                                st.lists(st.integers(0, 99), max_size=3)))
def test_a_valid_json_row_reads_back_as_written_whatever_else_it_carries(
        stamp: float, prompt: int, output: int, extra: dict[str, list[int]]) -> None:
    line = json.dumps({**extra, "output_length": output, "timestamp": stamp, "input_length": prompt})
    assert jsonl_row(line, 7) == (float(stamp) / 1000.0, prompt, output, 7)


@FAST
@given(rows=_ROWS, start_fraction=st.floats(0.0, 1.0), length=st.floats(1.0, 3.5), scale=st.floats(0.5, 4.0))
def test_a_window_from_any_start_wraps_to_the_trace_beginning_in_order(
        rows: list[tuple[int, int, int]], start_fraction: float, length: float, scale: float) -> None:
    """From a random start (``--seed``), the window takes the requests after it, then the trace
    again from its first request, one mean gap after the last: the requests in cyclic order."""
    trace = _trace(rows)
    start_s = trace.duration_s * start_fraction
    duration_s = length * trace.duration_s / scale
    window = scaled_window(trace, scale, duration_s, start_s)
    n = len(trace.requests)
    first = next((i for i, r in enumerate(trace.requests) if r.arrival_s >= start_s), n)
    expected = [trace.requests[(first + k) % n] for k in range(len(window))]
    assert [(r.prompt_tokens, r.output_tokens) for r in window] == [(r.prompt_tokens, r.output_tokens)
                                                                   for r in expected]
    arrivals = [r.arrival_s for r in window]
    assert arrivals == sorted(arrivals)
    assert all(0.0 <= t < duration_s * (1 + 1e-12) for t in arrivals)
    period = trace.duration_s + 1.0 / trace.requests_per_second
    for k, request in enumerate(window):
        tiles = (first + k) // n
        source_s = tiles * period + trace.requests[(first + k) % n].arrival_s
        assert request.arrival_s == pytest.approx((source_s - start_s) / scale, abs=1e-6)
