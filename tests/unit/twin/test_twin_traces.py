from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from joulescale.twin.traces import (
    TraceError,
    load_trace,
    parse_azure_csv,
    parse_jsonl,
    scaled_window,
    synthetic_trace,
)

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def test_shipped_conversation_trace_loads_sorted_from_time_zero() -> None:
    trace = load_trace("azure-conv")
    assert len(trace.requests) == 19366
    assert trace.requests[0].arrival_s == 0.0
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(trace.requests, trace.requests[1:], strict=False))
    assert 3400 < trace.duration_s < 3600


def test_azure_rows_keep_sub_millisecond_timestamps_and_token_counts() -> None:
    text = AZURE_HEADER + "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.1805901,10,2\n"
    trace = parse_azure_csv(text, "t")
    assert trace.requests[1].arrival_s == pytest.approx(0.5, abs=1e-6)
    assert (trace.requests[1].prompt_tokens, trace.requests[1].output_tokens) == (10, 2)


def test_malformed_azure_rows_are_all_reported_with_their_line_numbers() -> None:
    text = AZURE_HEADER + (
        "2023-11-16 18:15:46.68,374,44\n"
        "not-a-date,1,1\n"
        "2023-11-16 18:15:47.00,0,5\n"
        "2023-11-16 18:15:48.00,12\n"
    )
    with pytest.raises(TraceError) as caught:
        parse_azure_csv(text, "bad.csv")
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5"]
    assert "ContextTokens" in problems[1]
    assert "bad.csv" in str(caught.value)


def test_wrong_header_is_reported_on_line_one() -> None:
    with pytest.raises(TraceError, match="line 1"):
        parse_azure_csv("time,in,out\n1,2,3\n", "x")


def test_jsonl_uses_millisecond_timestamps_and_reports_bad_lines() -> None:
    good = '{"timestamp": 1000, "input_length": 5, "output_length": 3}\n{"timestamp": 3500, "input_length": 7, "output_length": 1}\n'
    trace = parse_jsonl(good, "t")
    assert [r.arrival_s for r in trace.requests] == [0.0, 2.5]
    bad = good + '{"timestamp": "soon", "input_length": 5, "output_length": 3}\n[1]\n'
    with pytest.raises(TraceError) as caught:
        parse_jsonl(bad, "t")
    assert [p.split(":")[0] for p in caught.value.problems] == ["line 3", "line 4"]


def test_load_trace_reads_files_by_suffix(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 5, "output_length": 3}\n', encoding="utf-8")
    assert load_trace(str(path)).requests[0].prompt_tokens == 5
    with pytest.raises(TraceError, match="cannot read"):
        load_trace(str(tmp_path / "missing.csv"))


def test_synthetic_arrivals_are_deterministic_for_a_seed_and_near_the_rate() -> None:
    a = synthetic_trace(10.0, 200.0, 100, 10, seed=3)
    b = synthetic_trace(10.0, 200.0, 100, 10, seed=3)
    c = synthetic_trace(10.0, 200.0, 100, 10, seed=4, arrivals="gamma")
    assert a == b
    assert a.requests != c.requests
    assert 9.0 < a.requests_per_second < 11.0
    assert 8.0 < c.requests_per_second < 12.0


def test_scaled_window_multiplies_the_rate_and_tiles_past_the_end() -> None:
    trace = synthetic_trace(2.0, 100.0, 10, 5, seed=1)
    base = scaled_window(trace, 1.0, 50.0)
    triple = scaled_window(trace, 3.0, 50.0)
    assert len(triple) == pytest.approx(3 * len(base), rel=0.25)
    assert all(r.arrival_s < 50.0 for r in triple)
    tiled = scaled_window(trace, 5.0, 50.0)  # needs 250 s of a 100 s trace
    assert len(tiled) == pytest.approx(2.5 * len(trace.requests), rel=0.1)
    assert all(a.arrival_s <= b.arrival_s for a, b in itertools.pairwise(tiled))


def test_the_twin_package_exports_exactly_its_public_names() -> None:
    import joulescale.twin as twin

    public = {name for name in vars(twin) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(twin, name)).__name__ == "module"}
    assert public - modules == set(twin.__all__)
