"""A small, fast parser of the Prometheus text exposition format (and OpenMetrics text).

The agent reads a dozen families of a 40 KB page twenty times a second, so the page is split
by one C-level regex pass, values stay text until a caller reads them, and labels are parsed
only for the series a caller filters. It is strict where a wrong answer would be worse than
none: a page that is HTML, cut off, or holds lines that are not samples raises
MetricsFormatError (a second, line-by-line pass names the offending line).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter

from joulescale_agent.errors import MetricsFormatError

_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)", re.M)
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)", re.M)
_name_of = itemgetter(0)


def parse_labels(raw: str) -> dict[str, str]:
    return {
        k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\") for k, v in _LABEL.findall(raw)
    }


def _label_value(raw: str, key: str) -> str | None:
    """One label's value without parsing the rest (bucket bounds are read thousands of times)."""
    at = raw.find(f'{key}="')
    while at > 0 and raw[at - 1] not in ", ":
        at = raw.find(f'{key}="', at + 1)
    if at < 0:
        return None
    start = at + len(key) + 2
    return raw[start : raw.index('"', start)]


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise MetricsFormatError(f"{name} has a non-numeric value {text[:40]!r}") from None


@dataclass(frozen=True, slots=True)
class Histogram:
    """A cumulative histogram: ``buckets`` maps the upper bound ``le`` to the cumulative count."""

    count: float
    sum: float
    buckets: dict[float, float] = field(default_factory=dict)

    def minus(self, earlier: Histogram) -> Histogram:
        """Increments since ``earlier``; a counter reset (engine restart) yields the later values."""
        if self.count < earlier.count:
            return self
        buckets = {le: c - earlier.buckets.get(le, 0.0) for le, c in self.buckets.items()}
        return Histogram(self.count - earlier.count, self.sum - earlier.sum, buckets)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None


@dataclass(slots=True)
class MetricsPage:
    """Samples by name; each is a list of (raw label text, value text)."""

    samples: dict[str, list[tuple[str, str]]]

    def has(self, name: str) -> bool:
        return name in self.samples

    def types(self, text: str) -> dict[str, str]:
        """The ``# TYPE`` declarations of the page (not needed on the hot path)."""
        return dict(_TYPE.findall(text))

    def series(self, name: str, where: dict[str, str] | None = None) -> list[tuple[dict[str, str], float]]:
        out = []
        for raw, value in self.samples.get(name, ()):
            labels = parse_labels(raw) if raw else {}
            if where and any(labels.get(k, v) != v for k, v in where.items()):
                continue
            out.append((labels, _number(name, value)))
        return out

    def total(self, name: str, where: dict[str, str] | None = None) -> float | None:
        """Sum over the series of ``name`` (e.g. over data-parallel engines); None if absent."""
        rows = self.samples.get(name)
        if rows is None:
            return None
        if where is None:
            return sum(_number(name, v) for _, v in rows)
        series = self.series(name, where)
        return sum(v for _, v in series) if series else None

    def histogram(self, base: str, where: dict[str, str] | None = None) -> Histogram | None:
        count = self.total(f"{base}_count", where)
        total = self.total(f"{base}_sum", where)
        if count is None or total is None:
            return None
        buckets: dict[float, float] = {}
        rows = self.samples.get(f"{base}_bucket", [])
        if where:
            rows = [
                (raw, v) for raw, v in rows if all(parse_labels(raw).get(k, x) == x for k, x in where.items())
            ]
        for raw, value in rows:
            le_text = _label_value(raw, "le")
            le = float(le_text) if le_text is not None else math.nan
            if not math.isnan(le):
                buckets[le] = buckets.get(le, 0.0) + _number(base, value)
        return Histogram(count, total, buckets)


def _sample_line_count(text: str) -> int:
    """Lines that are neither comments nor empty, counted at C speed."""
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    comments = text.count("\n#") + (1 if text.startswith("#") else 0)
    empty = text.count("\n\n") + (1 if text.startswith("\n") else 0)
    return lines - comments - empty


def _diagnose(text: str) -> None:
    """The slow pass: raise for the first line that is not a comment, blank or sample."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip() and not line.startswith("#") and not _SAMPLE.match(line):
            raise MetricsFormatError(f"line {number} is not a sample: {line[:80]!r}")


def parse_page(text: str) -> MetricsPage:
    """Parse one exposition page; raise MetricsFormatError on anything that is not one."""
    head = text.lstrip()[:64].lower()
    if head.startswith(("<!doctype", "<html", "<?xml")):
        raise MetricsFormatError("the metrics endpoint answered with an HTML/XML page, not metrics")
    if not text.strip():
        raise MetricsFormatError("the metrics page is empty")
    if not text.endswith("\n") and not text.rstrip().endswith("# EOF"):
        raise MetricsFormatError("the metrics page is truncated (no final newline)")
    matches = _SAMPLE.findall(text)
    if len(matches) != _sample_line_count(text):
        _diagnose(text)  # raises for a bad line; blank lines with spaces alone fall through
    samples: dict[str, list[tuple[str, str]]] = {}
    for name, rows in groupby(matches, key=_name_of):
        existing = samples.get(name)
        if existing is None:
            samples[name] = [(raw, value) for _, raw, value in rows]
        else:  # the same family again further down (order is not guaranteed)
            existing.extend((raw, value) for _, raw, value in rows)
    if not samples:
        raise MetricsFormatError("the metrics page holds no samples")
    return MetricsPage(samples)
