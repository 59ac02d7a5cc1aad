"""Workloads for the twin: the shipped Azure traces, user files, and synthetic arrivals.

A trace is a sorted tuple of ``TraceRequest``; every loader reports a malformed row with its
line number (one ``TraceError`` listing all of them), so a user fixing a file sees every
problem at once.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from joulescale.inputfile import InputFileError, read_bounded_text
from joulescale.twin import limits
from joulescale.twin.trace_rows import Row, iso_seconds, jsonl_row, row_of, shown, tokens

_DATA_PACKAGE = "joulescale.twin"
SHIPPED_TRACES: dict[str, str] = {
    "azure-conv": "AzureLLMInferenceTrace_conv.csv",
    "azure-code": "AzureLLMInferenceTrace_code.csv",
}
_AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_SUFFIXES_JSONL = (".jsonl", ".json", ".ndjson")


class TraceError(ValueError):
    """A trace cannot be read; ``problems`` holds one ``line N: why`` per bad row.

    The message is one line naming the first bad row as ``file:line`` and counting the others,
    so a user fixing a file sees where to start and how much is wrong.
    """

    def __init__(self, origin: str, problems: list[str]) -> None:
        self.problems = problems
        first = problems[0] if problems else "unreadable"
        line, sep, why = first.partition(": ")
        where = f"{origin}:{line.removeprefix('line ')}: {why}" if sep and line.startswith("line ") else \
            f"{origin}: {first}"
        more = len(problems) - 1
        tail = f" (and {more} more malformed row{'s' if more > 1 else ''})" if more > 0 else ""
        if len(problems) >= limits.MAX_REPORTED_PROBLEMS:
            tail = f" (and more: reading stopped after {limits.MAX_REPORTED_PROBLEMS} malformed rows)"
        super().__init__(f"trace {where}{tail}")


@dataclass(frozen=True, slots=True)
class TraceRequest:
    arrival_s: float
    """Seconds since the first request of the trace."""
    prompt_tokens: int
    output_tokens: int
    """Tokens generated, the first one (produced by prefill) included."""


@dataclass(frozen=True, slots=True)
class Trace:
    name: str
    requests: tuple[TraceRequest, ...]
    digest: str
    """Content hash, so caches keyed by a trace notice a changed file."""
    lines: tuple[int, ...] = ()
    """Source line of each request (empty for synthetic traces), to name it in errors."""

    @property
    def duration_s(self) -> float:
        return self.requests[-1].arrival_s if self.requests else 0.0

    @property
    def requests_per_second(self) -> float:
        duration = self.duration_s
        return len(self.requests) / duration if duration > 0 else 0.0


def digest_of(requests: tuple[TraceRequest, ...]) -> str:
    h = hashlib.sha256()
    for r in requests:
        h.update(f"{r.arrival_s:.6f},{r.prompt_tokens},{r.output_tokens};".encode())
    return h.hexdigest()[:16]


def _finish(name: str, raw: list[Row]) -> Trace:
    """Sorted by arrival (ties by line), from time zero."""
    if not raw:
        raise TraceError(name, ["no requests"])
    raw.sort(key=lambda row: (row[0], row[3]))
    start, end = raw[0][0], raw[-1][0]
    if end - start > limits.MAX_TRACE_SPAN_S:
        raise TraceError(name, [f"line {raw[-1][3]}: the trace spans {end - start:.3g} s, more than the "
                                f"{limits.MAX_TRACE_SPAN_S:.3g} s limit (wrong time unit?)"])
    requests = tuple(TraceRequest(t - start, p, o) for t, p, o, _ in raw)
    return Trace(name, requests, digest_of(requests), tuple(row[3] for row in raw))


def _check_shape(text: str, origin: str) -> None:
    """The line count and line length caps, before any parsing."""
    lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)  # the last may lack its newline
    if lines > limits.MAX_TRACE_LINES:
        raise TraceError(origin, [f"line {limits.MAX_TRACE_LINES + 1}: more than {limits.MAX_TRACE_LINES} "
                                  "lines; cut the trace to the part to replay"])
    for number, content in enumerate(text.split("\n"), start=1):
        if len(content) > limits.MAX_LINE_CHARS:
            raise TraceError(origin, [f"line {number}: longer than {limits.MAX_LINE_CHARS} characters"])


def parse_azure_csv(text: str, origin: str) -> Trace:
    """The Azure 2023 format: ``TIMESTAMP,ContextTokens,GeneratedTokens``, ISO timestamps."""
    _check_shape(text, origin)
    reader = csv.reader(io.StringIO(text))
    raw: list[Row] = []
    problems: list[str] = []
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != _AZURE_COLUMNS:
            raise TraceError(origin, [f"line 1: expected header {','.join(_AZURE_COLUMNS)}, got "
                                      f"{shown(','.join(header) if header else '')}"])
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            try:
                if len(row) != 3:
                    raise ValueError(f"expected 3 columns, got {len(row)}")
                raw.append(row_of(iso_seconds(row[0]), tokens(row[1], "ContextTokens"),
                                    tokens(row[2], "GeneratedTokens"), line))
            except (ValueError, OverflowError, OSError) as error:
                problems.append(f"line {line}: {error}")
                if len(problems) >= limits.MAX_REPORTED_PROBLEMS:
                    break
    except csv.Error as error:
        problems.append(f"line {reader.line_num}: not CSV: {error}")
    if problems:
        raise TraceError(origin, problems)
    return _finish(origin, raw)


def parse_jsonl(text: str, origin: str) -> Trace:
    """JSON lines with ``timestamp`` (ms), ``input_length`` and ``output_length``."""
    _check_shape(text, origin)
    raw: list[Row] = []
    problems: list[str] = []
    for line, content in enumerate(text.split("\n"), start=1):
        if not content.strip():
            continue
        try:
            raw.append(jsonl_row(content, line))
        except (ValueError, TypeError, OverflowError) as error:
            problems.append(f"line {line}: {error}")
            if len(problems) >= limits.MAX_REPORTED_PROBLEMS:
                break
    if problems:
        raise TraceError(origin, problems)
    return _finish(origin, raw)


def load_trace(name_or_path: str) -> Trace:
    """A shipped trace by name (``azure-conv``, ``azure-code``) or a CSV / JSON-lines file.

    Files are read within ``joulescale.twin.limits`` (regular files only, bytes, lines and line
    length capped), so a device, a pipe or a huge file is refused instead of read forever.
    """
    if name_or_path in SHIPPED_TRACES:
        text = resources.files(_DATA_PACKAGE).joinpath("data", SHIPPED_TRACES[name_or_path]).read_text(
            encoding="utf-8")
        return parse_azure_csv(text, name_or_path)
    try:
        text = read_bounded_text(name_or_path, limits.MAX_TRACE_BYTES)
    except InputFileError as error:
        raise TraceError(name_or_path, [str(error)]) from error
    if Path(name_or_path).suffix.lower() in _SUFFIXES_JSONL:
        return parse_jsonl(text, name_or_path)
    return parse_azure_csv(text, name_or_path)


def check_spans_time(trace: Trace) -> None:
    """A replay scales the trace's own rate: one request, or all at one instant, has none."""
    if not trace.duration_s > 0:
        line = trace.lines[-1] if trace.lines else len(trace.requests)
        raise TraceError(trace.name, [f"line {line}: all {len(trace.requests)} request(s) arrive at one instant; "
                                      "a replay needs two distinct arrival times to define a rate"])


def check_replayable(trace: Trace, max_prompt_tokens: int, max_request_tokens: int, why: str) -> None:
    """The trace spans time (a replay scales its rate) and every request fits one instance's KV
    cache (a larger one could never be served)."""
    check_spans_time(trace)
    for index, request in enumerate(trace.requests):
        if request.prompt_tokens > max_prompt_tokens or \
                request.prompt_tokens + request.output_tokens > max_request_tokens:
            line = trace.lines[index] if index < len(trace.lines) else index + 1
            raise TraceError(trace.name, [
                f"line {line}: {request.prompt_tokens} prompt + {request.output_tokens} output tokens do not "
                f"fit {why}"])


def synthetic_trace(
    rate_per_s: float,
    duration_s: float,
    prompt_tokens: int,
    output_tokens: int,
    seed: int,
    arrivals: Literal["poisson", "gamma"] = "poisson",
    cv: float = 2.0,
) -> Trace:
    """Poisson (exponential gaps) or Gamma arrivals (gaps with coefficient of variation ``cv``)."""
    rng = random.Random(seed)
    raw: list[Row] = []
    t = 0.0
    shape = 1.0 / (cv * cv)
    while t <= duration_s:
        raw.append((t, prompt_tokens, output_tokens, 0))
        if arrivals == "poisson":
            t += rng.expovariate(rate_per_s)
        else:
            t += rng.gammavariate(shape, 1.0 / (shape * rate_per_s))
    return _finish(f"synthetic-{arrivals}-{rate_per_s:g}", raw)


def scaled_window(trace: Trace, rate_scale: float, duration_s: float, start_s: float = 0.0) -> list[TraceRequest]:
    """Requests of ``duration_s`` simulated seconds at ``rate_scale`` x the trace's rate.

    Arrival gaps are divided by the scale (so bursts keep their shape); the source window is
    ``duration_s * rate_scale`` seconds of the trace from ``start_s``, tiled when it is longer
    than the trace.
    """
    if rate_scale <= 0 or duration_s <= 0:
        raise ValueError("rate_scale and duration_s must be positive")
    period = trace.duration_s + (1.0 / trace.requests_per_second if trace.requests_per_second > 0 else 1.0)
    source_end = start_s + duration_s * rate_scale
    out: list[TraceRequest] = []
    offset = 0.0
    while offset <= source_end:
        for r in trace.requests:
            source_t = offset + r.arrival_s
            if source_t < start_s:
                continue
            if source_t >= source_end:
                break
            out.append(TraceRequest((source_t - start_s) / rate_scale, r.prompt_tokens, r.output_tokens))
        offset += period
    return out


def span_holding(trace: Trace, count: int, start_s: float = 0.0) -> float:
    """Seconds of the trace from ``start_s`` (tiled as ``scaled_window`` tiles it) that hold
    ``count`` requests: a window of this span / scale seconds at a rate scale holds them."""
    if count < 1 or not trace.requests:
        return 0.0
    period = trace.duration_s + (1.0 / trace.requests_per_second if trace.requests_per_second > 0 else 1.0)
    arrivals = [r.arrival_s for r in trace.requests]
    first = bisect.bisect_left(arrivals, start_s)
    index = first + count - 1
    laps, position = divmod(index, len(arrivals))
    return laps * period + arrivals[position] - start_s + 1e-9
