"""A corpus of hostile engine /metrics pages, built from the real vLLM and SGLang samples.

Each page is what a broken or hostile engine could serve. Shared by the parser tests, the loop
tests and bench/metrics_parse.py. ``ACCEPTED`` names the pages that are read on purpose (their
values stay sane); every other page must be refused with MetricsFormatError.
"""

from __future__ import annotations

import gzip
import random
import re
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "fixtures" / "engine-metrics"
VLLM = (DATA / "vllm_v1_metrics_sample.prom").read_text()
SGLANG = (DATA / "sglang_metrics_sample.prom").read_text()
BASES = {"vllm": VLLM, "sglang": SGLANG}
MB = 1024 * 1024

# The line of each concept in each sample, as a regex of its start.
RUNNING = {"vllm": r"vllm:num_requests_running\{", "sglang": r"sglang:num_running_reqs\{"}
WAITING = {"vllm": r"vllm:num_requests_waiting\{", "sglang": r"sglang:num_queue_reqs\{"}
KV = {"vllm": r"vllm:kv_cache_usage_perc\{", "sglang": r"sglang:token_usage\{"}
TOKENS = {"vllm": r"vllm:generation_tokens_total\{", "sglang": r"sglang:generation_tokens_total\{"}
INFO = {"vllm": r"vllm:cache_config_info\{", "sglang": r"sglang:num_used_tokens\{"}
"""A family read for the KV capacity only (labels parsed on every page)."""
ITL = {"vllm": "vllm:inter_token_latency_seconds", "sglang": "sglang:inter_token_latency_seconds"}


@dataclass(frozen=True)
class Hostile:
    name: str
    engine: str
    page: str | bytes


def _value(base: str, line_start: str, value: str) -> str:
    """``base`` with the value of the first line starting with ``line_start`` replaced."""
    out, n = re.subn(
        rf"^({line_start}[^\n]*\}}) \S+", lambda m: f"{m.group(1)} {value}", base, count=1, flags=re.M
    )
    assert n == 1, line_start
    return out


def _line(base: str, line_start: str) -> str:
    found = re.search(rf"^{line_start}[^\n]*$", base, re.M)
    assert found is not None, line_start
    return found.group(0)


def _drop(base: str, line_start: str) -> str:
    out, n = re.subn(rf"^{line_start}[^\n]*\n", "", base, flags=re.M)
    assert n >= 1, line_start
    return out


def _retype(base: str, line_start: str, kind: str) -> str:
    """``base`` with the ``# TYPE`` line of the family of ``line_start`` declaring ``kind``."""
    name = re.sub(r"(_count|_sum|_bucket)?(\\\{)?$", "", line_start).replace("\\", "")
    out, n = re.subn(rf"^# TYPE {re.escape(name)} \S+$", f"# TYPE {name} {kind}", base, flags=re.M)
    assert n == 1, name
    return out


def _reordered(line: str) -> str:
    """The same series with its labels in reverse order."""
    head, rest = line.split("{", 1)
    labels, tail = rest.rsplit("}", 1)
    return head + "{" + ",".join(reversed(labels.split(","))) + "}" + tail


def _labels(base: str, line_start: str, extra: str) -> str:
    """Add label text after the opening brace of the first line starting with ``line_start``."""
    out, n = re.subn(rf"^({line_start})", lambda m: m.group(1) + extra, base, count=1, flags=re.M)
    assert n == 1, line_start
    return out


def _capacity_overflow(engine: str, base: str) -> str:
    if engine == "vllm":
        return base.replace('num_gpu_blocks="', 'num_gpu_blocks="' + "9" * 400, 1)
    return _value(_value(base, r"sglang:num_used_tokens\{", "1e308"), KV[engine], "1e-300")


def _per_engine(engine: str) -> list[tuple[str, str | bytes]]:
    base = BASES[engine]
    run, wait, kv, tokens, itl = RUNNING[engine], WAITING[engine], KV[engine], TOKENS[engine], ITL[engine]
    info = INFO[engine]
    bucket = rf"{itl}_bucket\{{"
    inf_bucket = rf'{itl}_bucket\{{[^\n]*le="\+Inf"'
    other = "sglang" if engine == "vllm" else "vllm"
    huge_label = 'junk="' + "x" * (4 * MB - len(base) - 100) + '",'
    return [
        ("nan running", _value(base, run, "NaN")),
        ("+Inf waiting", _value(base, wait, "+Inf")),
        ("-Inf kv usage", _value(base, kv, "-Inf")),
        ("negative running", _value(base, run, "-1")),
        ("huge running", _value(base, run, "1e300")),
        ("overflowing counter 1e999", _value(base, tokens, "1e999")),
        ("kv usage above 1", _value(base, kv, "7.5")),
        ("kv usage 1e300", _value(base, kv, "1e300")),
        ("absurd KV capacity", _capacity_overflow(engine, base)),
        ("non-numeric value", _value(base, run, "abc")),
        ("hex value", _value(base, run, "0x10")),
        ("underscored value", _value(base, wait, "1_000")),
        ("missing running", _drop(base, run)),
        ("missing waiting", _drop(base, wait)),
        ("page of the other engine", BASES[other]),
        ("running declared a histogram", _retype(base, run, "histogram")),
        ("token counter declared a gauge", _retype(base, tokens, "gauge")),
        ("latency histogram declared a counter", _retype(base, itl + "_count", "counter")),
        ("duplicate series", base + _line(base, run) + "\n"),
        ("duplicate series, labels reordered", base + _reordered(_line(base, run)) + "\n"),
        ("histogram count NaN", _value(base, rf"{itl}_count\{{", "NaN")),
        ("histogram sum negative", _value(base, rf"{itl}_sum\{{", "-5")),
        ("histogram buckets non-monotonic", _value(base, bucket, "1e12")),
        ("histogram without +Inf bucket", _drop(base, inf_bucket)),
        ("histogram +Inf differs from count", _value(base, inf_bucket, "3")),
        (
            "bucket le not a number",
            re.sub(rf'^({bucket}[^\n]*)le="[^"]*"', r'\1le="abc"', base, count=1, flags=re.M),
        ),
        ("bucket le without closing quote", base + f'{itl}_bucket{{le="0.5}} 3\n'),
        ("bucket le unterminated", base.replace(f"{itl}_bucket{{", f'{itl}_bucket{{le="0.5,', 1)),
        (
            "bucket le NaN",
            _labels(_drop(base, bucket), rf"{itl}_count\{{", "")
            + f'{itl}_bucket{{le="NaN",tp_rank="0"}} 1\n',
        ),
        ("bad escape in a label", _labels(base, run, 'a="\\q",')),
        ("unterminated label value", _labels(base, run, 'a="open,')),
        ("labels not key=value", _labels(base, run, "garbage,")),
        ("label appears twice", _labels(base, run, 'model_name="x",')),
        ("deeply repeated labels", _labels(base, run, 'a="1",' * 1000)),
        ("too many distinct labels", _labels(base, run, "".join(f'l{i}="v",' for i in range(100)))),
        ("label name too long", _labels(base, run, "n" * 300 + '="v",')),
        ("label value too long", _labels(base, run, 'v="' + "y" * 5000 + '",')),
        ("nested braces", _labels(base, run, "{{{{}}}}")),
        ("1 MB line in a used family", _labels(base, run, 'z="' + "z" * MB + '",')),
        ("4 MB page, one huge label", _labels(base, run, huge_label)),
        ("4 MB page, one huge label in the KV capacity family", _labels(base, info, huge_label)),
        ("over 4 MB page", base + "# pad\n" + ("pad_metric 1\n" * (4 * MB // 12))),
        ("4 MB of series, none used", "".join(f'noise{{i="{i}"}} {i}\n' for i in range(200_000))),
        ("truncated mid-line", base[: len(base) // 2]),
        ("invalid UTF-8 in a label", base.encode().replace(b"{", b'{bad="\xff\xfe",', 1)),
        ("NUL bytes", base.replace("\n", "\n\x00", 3)),
        ("name of 200 KB without a value", base + "a" * 200_000 + "\n"),
        ("a line of 200 KB of spaces", base + "a " + " " * 200_000 + "\n"),
        ("200 KB of unbalanced braces", base + "a{" + "x}" * 100_000 + "\n"),
        ("commas only in a used family", _labels(base, run, "," * 1000)),
        ("escaped quotes past the value limit", _labels(base, run, 'a="' + '=\\"' * 2000 + '",')),
        ("100 000 one-line families", base + "".join(f"f{i} 1\n" for i in range(100_000))),
        # Read on purpose (ACCEPTED): what is hostile there is never used, or harmless.
        ("200 KB comment line", base + "#" * 200_000 + "\n"),
        ("200 KB of quotes in an unused family", base + "a{" + '"' * 200_000 + "} 1\n"),
        ("200 KB label in an unused family", base + 'python_info{v="' + "v" * 200_000 + '"} 1\n'),
        ("CRLF line endings", base.replace("\n", "\r\n")),
    ]


def _generic() -> list[tuple[str, str | bytes]]:
    rng = random.Random(11)
    return [
        ("empty page", ""),
        ("blank lines only", "\n \n\t\n"),
        ("only comments", "# HELP x y\n# TYPE x gauge\n"),
        ("HTML error page", "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>\n"),
        ("HTML without doctype after blank lines", "\n\n<html><body>oops</body></html>\n"),
        ("XML", '<?xml version="1.0"?><error>x</error>\n'),
        ("JSON error", '{"error": "engine overloaded"}\n'),
        ("gzip bytes", gzip.compress(VLLM.encode())),
        ("binary garbage", bytes(rng.randrange(256) for _ in range(8192))),
        ("UTF-16 page", VLLM.encode("utf-16")),
        ("stack trace", 'Traceback (most recent call last):\n  File "x", line 1\nValueError: x\n'),
        ("single huge line without newline", "x" * (2 * MB)),
    ]


def corpus() -> list[Hostile]:
    pages = [Hostile(name, "vllm", page) for name, page in _generic()]
    pages += [Hostile(name, "sglang", page) for name, page in _generic()]
    for engine in BASES:
        pages += [Hostile(name, engine, page) for name, page in _per_engine(engine)]
    return pages


ACCEPTED: frozenset[str] = frozenset(
    {
        "200 KB comment line",
        "200 KB of quotes in an unused family",
        "200 KB label in an unused family",
        "CRLF line endings",
    }
)
"""Hostile pages read on purpose: the over-limit line is skipped and counted, or a comment, or
CRLF (values end at whitespace); the sample they give is sane and complete."""
