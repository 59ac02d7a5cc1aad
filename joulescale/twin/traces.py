"""Workloads for the twin: the shipped Azure traces, user files, and synthetic arrivals.

A trace is a sorted tuple of ``TraceRequest``; every loader reports a malformed row with its
line number (one ``TraceError`` listing all of them), so a user fixing a file sees every
problem at once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Literal

_DATA_PACKAGE = "joulescale.twin"
SHIPPED_TRACES: dict[str, str] = {
    "azure-conv": "AzureLLMInferenceTrace_conv.csv",
    "azure-code": "AzureLLMInferenceTrace_code.csv",
}
_AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_MAX_REPORTED = 20


class TraceError(ValueError):
    """A trace cannot be read; ``problems`` holds one ``line N: why`` per bad row."""

    def __init__(self, origin: str, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:_MAX_REPORTED]
        more = len(problems) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        super().__init__(f"trace {origin}: {len(problems)} malformed row(s):\n  " + "\n  ".join(shown) + tail)


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

    @property
    def duration_s(self) -> float:
        return self.requests[-1].arrival_s if self.requests else 0.0

    @property
    def requests_per_second(self) -> float:
        duration = self.duration_s
        return len(self.requests) / duration if duration > 0 else 0.0


def _digest(requests: tuple[TraceRequest, ...]) -> str:
    h = hashlib.sha256()
    for r in requests:
        h.update(f"{r.arrival_s:.6f},{r.prompt_tokens},{r.output_tokens};".encode())
    return h.hexdigest()[:16]


def _finish(name: str, raw: list[tuple[float, int, int]]) -> Trace:
    if not raw:
        raise TraceError(name, ["no requests"])
    raw.sort(key=lambda row: row[0])
    start = raw[0][0]
    requests = tuple(TraceRequest(t - start, p, o) for t, p, o in raw)
    return Trace(name, requests, _digest(requests))


def _positive_int(value: str | int | float | None, column: str) -> int:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{column} is missing")
    number = int(value) if isinstance(value, int) else int(str(value).strip())
    if number < 1:
        raise ValueError(f"{column} must be >= 1, got {number}")
    return number


def parse_azure_csv(text: str, origin: str) -> Trace:
    """The Azure 2023 format: ``TIMESTAMP,ContextTokens,GeneratedTokens``, ISO timestamps."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != _AZURE_COLUMNS:
        raise TraceError(origin, [f"line 1: expected header {','.join(_AZURE_COLUMNS)}, got {header}"])
    raw: list[tuple[float, int, int]] = []
    problems: list[str] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            if len(row) != 3:
                raise ValueError(f"expected 3 columns, got {len(row)}")
            stamp = row[0].strip()
            # Python < 3.12 accepts at most 6 fractional digits; the trace has 7.
            head, dot, fraction = stamp.partition(".")
            when = datetime.fromisoformat(head + (dot + fraction[:6] if dot else ""))
            raw.append((when.timestamp(), _positive_int(row[1], "ContextTokens"),
                        _positive_int(row[2], "GeneratedTokens")))
        except ValueError as error:
            problems.append(f"line {line}: {error}")
    if problems:
        raise TraceError(origin, problems)
    return _finish(origin, raw)


def parse_jsonl(text: str, origin: str) -> Trace:
    """JSON lines with ``timestamp`` (ms), ``input_length`` and ``output_length``."""
    raw: list[tuple[float, int, int]] = []
    problems: list[str] = []
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            item = json.loads(content)
            if not isinstance(item, dict):
                raise ValueError("expected a JSON object")
            stamp = item.get("timestamp")
            if isinstance(stamp, bool) or not isinstance(stamp, int | float):
                raise ValueError("timestamp (ms) must be a number")
            raw.append((float(stamp) / 1000.0, _positive_int(item.get("input_length"), "input_length"),
                        _positive_int(item.get("output_length"), "output_length")))
        except (ValueError, TypeError) as error:
            problems.append(f"line {line}: {error}")
    if problems:
        raise TraceError(origin, problems)
    return _finish(origin, raw)


def load_trace(name_or_path: str) -> Trace:
    """A shipped trace by name (``azure-conv``, ``azure-code``) or a CSV / JSON-lines file."""
    if name_or_path in SHIPPED_TRACES:
        text = resources.files(_DATA_PACKAGE).joinpath("data", SHIPPED_TRACES[name_or_path]).read_text(
            encoding="utf-8")
        return parse_azure_csv(text, name_or_path)
    path = Path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TraceError(name_or_path, [f"cannot read: {error}"]) from error
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        return parse_jsonl(text, name_or_path)
    return parse_azure_csv(text, name_or_path)


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
    raw: list[tuple[float, int, int]] = []
    t = 0.0
    shape = 1.0 / (cv * cv)
    while t <= duration_s:
        raw.append((t, prompt_tokens, output_tokens))
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
