"""A small, fast, bounded parser of the Prometheus text exposition format (and OpenMetrics text).

The agent reads a dozen families of a 40 KB page twenty times a second, so the page is split
by C-level regex passes over chunks of lines, values stay text until a caller reads them, and
labels are parsed only for the series a caller filters. The page is written by a tenant's
engine, so every cost is bounded: lines and names over ``ParseLimits`` are skipped (and a
family that lost a line can no longer be read), labels are checked when parsed, and a
``deadline`` is checked between chunks. Anything that is not a usable page raises
MetricsFormatError (MetricsLimitError for a limit); no other exception leaves this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress, groupby
from operator import itemgetter

from joulescale.engines.histogram import Histogram
from joulescale_agent.engines.promlabels import DEFAULT_LIMITS, ParseLimits, label_key, parse_labels
from joulescale_agent.errors import MetricsFormatError, MetricsLimitError

__all__ = [
    "DEFAULT_LIMITS",
    "Deadline",
    "Histogram",
    "MetricsPage",
    "ParseLimits",
    "parse_labels",
    "parse_page",
]

_LE = re.compile(r'(?:^|,)[ \t]*le="([^"\\]*)"')
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)", re.M)
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)", re.M)
_TYPE_LINE = re.compile(r"\n# TYPE (\S+) (\S+)")  # a literal prefix: ten times faster than ^ with re.M
_TYPE_FIRST = re.compile(r"# TYPE (\S+) (\S+)")
_LEADING_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_name_of = itemgetter(0)
_labels_of = itemgetter(1)
_MAX_VALUE_CHARS = 64
"""No number in the exposition format needs more characters than this."""

Deadline = Callable[[], None]
"""Called between chunks; raises (MetricsLimitError) once the parse is over its time budget."""


def _number(name: str, text: str) -> float:
    try:
        if "_" in text or len(text) > _MAX_VALUE_CHARS:  # Python reads 1_000; the format does not
            raise ValueError(text)
        return float(text)
    except ValueError:
        raise MetricsFormatError(f"{name} has a non-numeric value {text[:40]!r}") from None


@dataclass(slots=True)
class MetricsPage:
    """Samples by name; each is a list of (raw label text, value text).

    ``skipped`` counts lines left out for a limit; ``tainted`` names the families that lost a
    line that way, which can no longer be read (a partial sum would be a wrong answer);
    ``declared`` holds the page's ``# TYPE`` lines.
    """

    samples: dict[str, list[tuple[str, str]]]
    limits: ParseLimits = DEFAULT_LIMITS
    skipped: int = 0
    tainted: frozenset[str] = frozenset()
    declared: dict[str, str] = field(default_factory=dict)
    _checked: set[str] = field(default_factory=set)

    def types(self, text: str) -> dict[str, str]:
        """The ``# TYPE`` declarations of the page (not needed on the hot path)."""
        return dict(_TYPE.findall(text))

    def _rows(self, name: str) -> list[tuple[str, str]] | None:
        if name in self.tainted:
            raise MetricsLimitError(f"{name} has lines over the parse limits")
        rows = self.samples.get(name)
        if rows is None or name in self._checked:
            return rows
        keys = {label_key(raw, self.limits) if raw else () for raw, _ in rows}
        if len(keys) != len(rows):
            raise MetricsFormatError(f"{name} holds the same series twice")
        self._checked.add(name)
        return rows

    def series(self, name: str, where: dict[str, str] | None = None) -> list[tuple[dict[str, str], float]]:
        out = []
        for raw, value in self._rows(name) or ():
            labels = parse_labels(raw, self.limits) if raw else {}
            if where and any(labels.get(k, v) != v for k, v in where.items()):
                continue
            out.append((labels, _number(name, value)))
        return out

    def total(self, name: str, where: dict[str, str] | None = None) -> float | None:
        """Sum over the series of ``name`` (e.g. over data-parallel engines); None if absent."""
        rows = self._rows(name)
        if rows is None:
            return None
        if where is None:
            return math.fsum(_number(name, v) for _, v in rows)
        series = self.series(name, where)
        return math.fsum(v for _, v in series) if series else None

    def histogram(self, base: str, where: dict[str, str] | None = None) -> Histogram | None:
        count = self.total(f"{base}_count", where)
        total = self.total(f"{base}_sum", where)
        if count is None or total is None:
            return None
        buckets: dict[float, float] = {}
        rows = self._rows(f"{base}_bucket") or []
        if where:
            rows = [
                (raw, v)
                for raw, v in rows
                if all(parse_labels(raw, self.limits).get(k, x) == x for k, x in where.items())
            ]
        for raw, value in rows:
            found = _LE.search(raw)
            le = _number(f"{base}_bucket le", found.group(1)) if found is not None else math.nan
            if math.isnan(le):
                raise MetricsFormatError(f"{base}_bucket has a bucket without a numeric le")
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


def _drop_long_lines(lines: list[str], limits: ParseLimits) -> tuple[list[str], int, set[str]]:
    """Lines within the limit, how many were dropped, and the families they belonged to."""
    kept, tainted = [], set()
    for line in lines:
        if len(line) <= limits.max_line_chars:
            kept.append(line)
        elif not line.startswith("#"):
            name = _LEADING_NAME.match(line[: limits.max_name_chars + 1])
            tainted.add(name.group(0) if name is not None else "")
    return kept, len(lines) - len(kept), tainted


def _drop_overruns(
    matches: list[tuple[str, str, str]], limits: ParseLimits
) -> tuple[list[tuple[str, str, str]], int, set[str]]:
    """Samples whose label texts keep the limits. Only texts long enough to break one are
    parsed here (a malformed short one is found when its family is read); values are checked
    when read."""
    threshold = min(limits.max_name_chars, limits.max_label_value_chars, 5 * limits.max_labels)
    over: set[tuple[str, str, str]] = set()
    # A C-level filter: a page's few long label texts (vLLM's cache_config_info).
    for match in compress(matches, map(threshold.__lt__, map(len, map(_labels_of, matches)))):
        try:
            if len(match[1]) > limits.max_line_chars:
                raise MetricsLimitError("label text over the line limit")
            label_key(match[1], limits)
        except MetricsLimitError:
            over.add(match)
        except MetricsFormatError:
            pass
    if not over:
        return matches, 0, set()
    kept = [match for match in matches if match not in over]
    return kept, len(matches) - len(kept), {name for name, _, _ in over}


def _chunks(lines: list[str], chunk_chars: int) -> list[str]:
    """Whole lines joined into pieces of about ``chunk_chars`` (each ends with a newline)."""
    out: list[str] = []
    piece: list[str] = []
    size = 0
    for line in lines:
        piece.append(line)
        size += len(line) + 1
        if size >= chunk_chars:
            out.append("\n".join(piece) + "\n")
            piece, size = [], 0
    if piece:
        out.append("\n".join(piece) + "\n")
    return out


def _check_page(text: str, limits: ParseLimits) -> None:
    if len(text) > limits.max_page_chars:
        raise MetricsLimitError(f"the metrics page holds more than {limits.max_page_chars} characters")
    head = text.lstrip()[:64].lower()
    if head.startswith(("<!doctype", "<html", "<?xml")):
        raise MetricsFormatError("the metrics endpoint answered with an HTML/XML page, not metrics")
    if not text.strip():
        raise MetricsFormatError("the metrics page is empty")
    if not text.endswith("\n") and not text.rstrip().endswith("# EOF"):
        raise MetricsFormatError("the metrics page is truncated (no final newline)")
    if "\x00" in text:
        raise MetricsFormatError("the metrics page holds NUL characters (binary data)")


def parse_page(
    text: str, limits: ParseLimits = DEFAULT_LIMITS, deadline: Deadline | None = None
) -> MetricsPage:
    """Parse one exposition page; raise MetricsFormatError on anything that is not one."""
    _check_page(text, limits)
    skipped, tainted = 0, set[str]()
    chunks = [text]  # the usual page: one pass, no copies; long label texts are dropped below
    if len(text) > limits.chunk_chars:
        lines = text.split("\n")
        if max(map(len, lines)) > limits.max_line_chars:
            lines, skipped, tainted = _drop_long_lines(lines, limits)
        chunks = _chunks(lines, limits.chunk_chars)
    matches: list[tuple[str, str, str]] = []
    declared: dict[str, str] = {}
    for chunk in chunks:
        if deadline is not None:
            deadline()
        first = _TYPE_FIRST.match(chunk)
        if first is not None:
            declared[first.group(1)] = first.group(2)
        declared.update(_TYPE_LINE.findall(chunk))
        found = _SAMPLE.findall(chunk)
        if len(found) != _sample_line_count(chunk):
            _diagnose(chunk)  # raises for a bad line; blank lines with spaces alone fall through
        matches += found
        if len(matches) > limits.max_samples:
            raise MetricsLimitError(f"the metrics page holds more than {limits.max_samples} samples")
    matches, over, more_tainted = _drop_overruns(matches, limits)
    skipped, tainted = skipped + over, tainted | more_tainted
    if deadline is not None:
        deadline()
    samples: dict[str, list[tuple[str, str]]] = {}
    for group, (name, rows) in enumerate(groupby(matches, key=_name_of)):
        if deadline is not None and group % 4096 == 4095:
            deadline()
        existing = samples.get(name)
        if existing is None:
            samples[name] = [(raw, value) for _, raw, value in rows]
        else:  # the same family again further down (order is not guaranteed)
            existing.extend((raw, value) for _, raw, value in rows)
    for name in [n for n in samples if len(n) > limits.max_name_chars]:
        skipped += len(samples.pop(name))
    if not samples:
        raise MetricsFormatError("the metrics page holds no samples")
    return MetricsPage(samples, limits, skipped, frozenset(tainted), declared)
