from __future__ import annotations

import itertools
import os
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
from tests.unit.hostile_cli import assert_refused, run_all

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
    with pytest.raises(TraceError, match="x:1: expected header"):
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


# --- hostile trace files: each refused by the real CLI at once, in one line naming file:line ---

_ROW = "2023-11-16 18:15:46.68,374,44\n"
_LATER = "2023-11-16 18:15:50.00,10,2\n"
_J = '{{"timestamp": {t}, "input_length": {i}, "output_length": {o}}}\n'
_GOOD_JSON = _J.format(t=0, i=5, o=3)


def _hostile_traces(tmp: Path) -> list[tuple[str, str]]:
    """(path, what the one error line must contain): the file and, for a bad row, its line."""
    cases: list[tuple[str, str]] = []

    def write(name: str, content: str | bytes, where: str) -> None:
        path = tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        cases.append((str(path), where.format(path=path)))

    head = AZURE_HEADER
    write("empty.csv", "", "{path}:1: expected header")
    write("header-only.csv", head, "{path}: no requests")
    write("wrong-columns.csv", "time,in,out\n1,2,3\n", "{path}:1: expected header")
    write("two-columns.csv", head + _ROW + "2023-11-16 18:15:47.00,12\n", "{path}:3: expected 3 columns")
    write("huge-prompt.csv", head + _ROW + "2023-11-16 18:15:47.00,1000000000000,5\n", "{path}:3: ContextTokens must be in [1, 10000000]")
    write("huge-output.csv", head + _ROW + "2023-11-16 18:15:47.00,5,1000000000000\n", "{path}:3: GeneratedTokens")
    write("beyond-kv.csv", head + _ROW + "2023-11-16 18:15:47.00,5000000,5\n" + _LATER, "{path}:3: 5000000 prompt")
    write("beyond-int64.csv", head + _ROW + f"2023-11-16 18:15:47.00,{2**64},5\n", "{path}:3: ContextTokens")
    write("negative.csv", head + _ROW + "2023-11-16 18:15:47.00,-5,5\n", "{path}:3: ContextTokens")
    write("zero-output.csv", head + _ROW + "2023-11-16 18:15:47.00,5,0\n", "{path}:3: GeneratedTokens")
    write("unicode-digits.csv", head + _ROW + "2023-11-16 18:15:47.00,\u0663\u0663,5\n", "{path}:3: ContextTokens")
    write("underscores.csv", head + _ROW + "2023-11-16 18:15:47.00,1_000,5\n", "{path}:3: ContextTokens")
    write("float-tokens.csv", head + _ROW + "2023-11-16 18:15:47.00,5.5,5\n", "{path}:3: ContextTokens")
    write("nan-tokens.csv", head + _ROW + "2023-11-16 18:15:47.00,nan,5\n", "{path}:3: ContextTokens")
    write("bad-date.csv", head + _ROW + "yesterday,5,5\n", "{path}:3: ")
    write("one-instant.csv", head + _ROW + _ROW, "{path}:3: all 2 request(s) arrive at one instant")
    write("millennia.csv", head + _ROW + "3023-11-16 18:15:46.68,5,5\n", "{path}:3: the trace spans")
    write("nul.csv", head + _ROW + "2023-11-16\x0018:15:47.00,5,5\n", "{path}:3: NUL byte")
    write("latin1.csv", head.encode() + b"2023-11-16 18:15:47.00,5,5 caf\xe9\n", "{path}:2: not UTF-8")
    write("binary.csv", bytes(range(256)) * 4, "{path}:1: NUL byte")
    write("long-line.csv", head + "9" * 70_000 + "\n", "{path}:2: longer than")
    write("blank-lines.csv", "\n" * 50_001, "{path}:50001: more than 50000 lines")
    write("deep.jsonl", _GOOD_JSON + "[" * 5000 + "\n", "{path}:2: JSON nested too deeply")
    write("nan-time.jsonl", _GOOD_JSON + _J.format(t="NaN", i=5, o=3), "{path}:2: NaN")
    write("inf-time.jsonl", _GOOD_JSON + _J.format(t="Infinity", i=5, o=3), "{path}:2: Infinity")
    write("overflow-time.jsonl", _GOOD_JSON + _J.format(t="1e309", i=5, o=3), "{path}:2: timestamp")
    write("negative-time.jsonl", _GOOD_JSON + _J.format(t=-1000, i=5, o=3), "{path}:2: timestamp")
    write("far-time.jsonl", _GOOD_JSON + _J.format(t="1e300", i=5, o=3), "{path}:2: timestamp")
    write("huge-prompt.jsonl", _GOOD_JSON + _J.format(t=1000, i=10**12, o=3), "{path}:2: input_length")
    write("beyond-int64.jsonl", _GOOD_JSON + _J.format(t=1000, i=2**64, o=3), "{path}:2: input_length")
    write("digits-5000.jsonl", _GOOD_JSON + _J.format(t=1000, i="9" * 5000, o=3), "{path}:2: a number with more digits")
    write("bool.jsonl", _GOOD_JSON + _J.format(t=1000, i="true", o=3), "{path}:2: input_length")
    write("string.jsonl", _GOOD_JSON + _J.format(t=1000, i='"5"', o=3), "{path}:2: input_length")
    write("float.jsonl", _GOOD_JSON + _J.format(t=1000, i=5.5, o=3), "{path}:2: input_length")
    write("bool-time.jsonl", _GOOD_JSON + _J.format(t="false", i=5, o=3), "{path}:2: timestamp")
    write("duplicate-key.jsonl", _GOOD_JSON + '{"timestamp": 9, "input_length": 5, "input_length": 6, '
                                              '"output_length": 3}\n', "{path}:2: duplicate key")
    write("missing.jsonl", _GOOD_JSON + '{"timestamp": 9}\n', "{path}:2: input_length is missing")
    write("array.jsonl", _GOOD_JSON + "[1, 2, 3]\n", "{path}:2: expected a JSON object")
    write("not-json.jsonl", _GOOD_JSON + "timestamp=5\n", "{path}:2: not JSON: Expecting value at column 1")
    directory = tmp / "folder.csv"
    directory.mkdir()
    cases.append((str(directory), "not a regular file"))
    fifo = tmp / "pipe.jsonl"
    os.mkfifo(fifo)
    cases.append((str(fifo), "not a regular file"))
    link = tmp / "zero.csv"
    link.symlink_to("/dev/zero")
    cases.append((str(link), "not a regular file"))
    cases.append(("/dev/zero", "not a regular file"))
    sparse = tmp / "sparse.csv"
    with sparse.open("wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # a 200 MB file of NULs that takes no disk
    cases.append((str(sparse), "larger than the"))
    cases.append((str(tmp / "absent.csv"), "cannot read"))
    return cases


def test_hostile_trace_files_are_refused_at_once_in_one_line_naming_the_line(tmp_path: Path) -> None:
    cases = _hostile_traces(tmp_path)
    outcomes = run_all([["twin", "compare", "--no-cache", "--trace", path, "--gpus", "8"] for path, _ in cases])
    failures = []
    for (path, where), outcome in zip(cases, outcomes, strict=True):
        try:
            assert_refused(outcome, "joulescale: error: trace", where)
        except AssertionError as error:
            failures.append(f"{Path(path).name}: {error}")
    assert not failures, "\n".join(failures)
    assert len(cases) >= 44


def test_a_bom_crlf_azure_file_and_a_mooncake_file_still_load(tmp_path: Path) -> None:
    azure = tmp_path / "bom.csv"
    azure.write_bytes(b"\xef\xbb\xbf" + (AZURE_HEADER + _ROW + _LATER).replace("\n", "\r\n").encode())
    assert [r.prompt_tokens for r in load_trace(str(azure)).requests] == [374, 10]
    mooncake = tmp_path / "mooncake.jsonl"
    mooncake.write_text('{"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]}\n'
                        '{"timestamp": 30535, "input_length": 6472, "output_length": 26, "hash_ids": [46, 52]}\n',
                        encoding="utf-8")
    trace = load_trace(str(mooncake))
    assert [r.arrival_s for r in trace.requests] == [0.0, pytest.approx(3.053)]
    assert trace.lines == (1, 2)


def test_the_error_message_is_one_line_naming_the_first_bad_row_and_counting_the_rest() -> None:
    text = AZURE_HEADER + _ROW + "x,1,1\n" + "y,1,1\n" + "z,1,1\n"
    with pytest.raises(TraceError) as caught:
        parse_azure_csv(text, "t.csv")
    assert str(caught.value).startswith("trace t.csv:3: ")
    assert str(caught.value).endswith("(and 2 more malformed rows)")
    assert "\n" not in str(caught.value)
