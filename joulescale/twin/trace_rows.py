"""One row of a trace file, validated: bounded whole token counts, finite bounded timestamps.

JSON lines are parsed strictly: no NaN or Infinity, no duplicate keys, no strings where numbers go, and nesting beyond the recursion limit is a row error, not a crash.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from joulescale.twin import limits

_TOKENS_TEXT = re.compile(r"[0-9]{1,30}")
Row = tuple[float, int, int, int]
"""(arrival in seconds, prompt tokens, output tokens, source line)."""


def tokens(value: object, column: str) -> int:
    """A whole count in [1, MAX_REQUEST_TOKENS]: JSON integers or ASCII digits, nothing else."""
    if isinstance(value, str) and _TOKENS_TEXT.fullmatch(value.strip()):
        value = int(value)
    if value is None:
        raise ValueError(f"{column} is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{column} must be a whole number of tokens, got {shown(value)}")
    if not 1 <= value <= limits.MAX_REQUEST_TOKENS:
        raise ValueError(f"{column} must be in [1, {limits.MAX_REQUEST_TOKENS}], got {value}")
    return value


def row_of(arrival_s: float, prompt: int, output: int, line: int) -> Row:
    if prompt + output > limits.MAX_REQUEST_TOKENS:
        raise ValueError(f"prompt + output tokens {prompt + output} exceed {limits.MAX_REQUEST_TOKENS}")
    return arrival_s, prompt, output, line


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def iso_seconds(cell: str) -> float:
    stamp = cell.strip()
    if not stamp.isascii():
        raise ValueError(f"TIMESTAMP must be an ISO date and time, got {shown(stamp)}")
    # Python < 3.12 accepts at most 6 fractional digits; the trace has 7 (an offset may follow them).
    head, dot, rest = stamp.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        stamp = head + dot + rest[:min(digits, 6)] + rest[digits:]
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:  # one clock for naive stamps, not the machine's (no daylight-saving jumps)
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class _Refused(ValueError):
    """Raised by the decoder's hooks; any other ValueError while decoding is an unconvertible number."""


def _no_constants(name: str) -> float:
    raise _Refused(f"{name} is not a number")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    item: dict[str, object] = {}
    for key, value in pairs:
        if key in item:
            raise _Refused(f"duplicate key {shown(key)}")
        item[key] = value
    return item


_DECODER = json.JSONDecoder(parse_constant=_no_constants, object_pairs_hook=_unique_keys)
"""One decoder for every line (building one per line costs more than parsing). CPython's JSON
scanner takes ASCII digits only, and a 5000-digit integer is a ValueError."""


def jsonl_row(content: str, line: int) -> Row:
    try:
        item = _DECODER.decode(content)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error.msg} at column {error.colno}") from None
    except _Refused:
        raise
    except ValueError:
        raise ValueError("a number with more digits than Python converts (4300)") from None
    if not isinstance(item, dict):
        raise ValueError("expected a JSON object")
    stamp = item.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise ValueError(f"timestamp (ms) must be a number, got {shown(stamp)}")
    if not 0 <= stamp <= limits.MAX_TIMESTAMP_MS:  # also refuses NaN and infinities
        raise ValueError(f"timestamp (ms) must be in [0, 2**53], got {stamp:g}")
    return row_of(float(stamp) / 1000.0, _tokens_json(item, "input_length"), _tokens_json(item, "output_length"),
                    line)


def _tokens_json(item: dict[str, object], key: str) -> int:
    value = item.get(key)
    if isinstance(value, str):  # strings where numbers go are refused in JSON
        raise ValueError(f"{key} must be a JSON integer, got {shown(value)}")
    return tokens(value, key)
