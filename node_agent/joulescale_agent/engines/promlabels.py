"""Label texts of the exposition format, and the limits of what one engine page may hold.

The parser is strict and runs in linear time: one unrolled regex checks the whole label text
(no backtracking blow-up on a hostile value), a second reads the pairs, and only the three
escapes of the format are accepted. Label texts repeat on every page, so those of the default
limits are remembered once checked.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from joulescale_agent.errors import MetricsFormatError, MetricsLimitError

_NAME_PATTERN = r"[a-zA-Z_][a-zA-Z0-9_]*"
_VALUE_PATTERN = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # unrolled: linear time, no backtracking blow-up
_LABEL = re.compile(rf"({_NAME_PATTERN})[ \t]*=[ \t]*{_VALUE_PATTERN}")
_LABELS = re.compile(rf"[ \t]*(?:{_NAME_PATTERN}[ \t]*=[ \t]*{_VALUE_PATTERN}[ \t]*(?:,[ \t]*|$))*")
_ESCAPE = re.compile(r"\\(.?)", re.S)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """What one engine page may hold; generous for real vLLM/SGLang pages (lines < 1 KB)."""

    max_page_chars: int = 4 * 1024 * 1024
    """A longer page is refused whole (the scraper stops reading at the same size in bytes)."""
    max_line_chars: int = 16 * 1024
    """A longer line is skipped and counted; its family can no longer be read."""
    max_name_chars: int = 256
    """Metric and label names; a longer metric name is skipped like a long line."""
    max_label_value_chars: int = 4096
    max_labels: int = 64
    """Labels of one series; duplicates of a label name are refused."""
    max_samples: int = 50_000
    """Sample lines of one page (a real page holds about a thousand); more refuse the page."""
    chunk_chars: int = 256 * 1024
    """The regex pass runs over chunks of about this size, so no single C call runs long."""


DEFAULT_LIMITS = ParseLimits()


def _unescape(value: str) -> str:
    def one(match: re.Match[str]) -> str:
        try:
            return _ESCAPES[match.group(1)]
        except KeyError:
            raise MetricsFormatError(f"bad escape \\{match.group(1)[:1]!s} in a label value") from None

    return _ESCAPE.sub(one, value)


def parse_labels(raw: str, limits: ParseLimits = DEFAULT_LIMITS) -> dict[str, str]:
    """The labels of one series; raises on malformed text, a bad escape or a limit."""
    if not _LABELS.fullmatch(raw):
        raise MetricsFormatError(f"malformed labels {raw[:60]!r}")
    pairs = _LABEL.findall(raw)
    if len(pairs) > limits.max_labels:
        raise MetricsLimitError(f"a series has {len(pairs)} labels, more than {limits.max_labels}")
    labels: dict[str, str] = {}
    for name, value in pairs:
        if len(name) > limits.max_name_chars or len(value) > limits.max_label_value_chars:
            raise MetricsLimitError(f"label {name[:40]!r} is over the name or value length limit")
        labels[name] = _unescape(value) if "\\" in value else value
    if len(labels) != len(pairs):
        raise MetricsFormatError(f"a label name appears twice in {raw[:60]!r}")
    return labels


LabelKey = tuple[tuple[str, str], ...]
"""A series' labels in name order: two texts of one series have the same key."""


def _key(raw: str, limits: ParseLimits) -> LabelKey:
    return tuple(sorted(parse_labels(raw, limits).items()))


@functools.lru_cache(maxsize=4096)
def _key_default(raw: str) -> LabelKey:
    return _key(raw, DEFAULT_LIMITS)


def label_key(raw: str, limits: ParseLimits = DEFAULT_LIMITS) -> LabelKey:
    """The series' key; raises unless ``raw`` is a well-formed label set within the limits. An
    engine repeats the same label texts on every page, so short ones are remembered."""
    if limits is DEFAULT_LIMITS and len(raw) <= 512:
        return _key_default(raw)
    return _key(raw, limits)
