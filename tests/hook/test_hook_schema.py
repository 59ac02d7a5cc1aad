"""The wire schema: what the publisher encodes the reader decodes, and nothing else decodes."""

from __future__ import annotations

import contextlib
import json
import random
import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from joulescale_hook.schema import (
    HEADER,
    MAX_ENTRIES,
    VERSION,
    Engine,
    HookDecodeError,
    StepDone,
    StepScheduled,
    decode,
    encode,
)

u32 = st.integers(0, 2**32 - 1)
ns = st.integers(-(2**63), 2**63 - 1)


@st.composite
def scheduled(draw: st.DrawFn) -> StepScheduled:
    n_p = draw(st.integers(0, 5))
    n_d = draw(st.integers(0, 40))
    n_w = draw(st.integers(0, 20))
    col = lambda n, s: tuple(draw(st.lists(s, min_size=n, max_size=n)))  # noqa: E731
    return StepScheduled(
        engine=draw(st.sampled_from(Engine)), step_id=draw(st.integers(0, 2**64 - 1)), t_ns=draw(ns),
        prefill_requests=n_p, prefill_tokens=draw(u32), decode_requests=n_d,
        decode_kv_tokens=draw(st.integers(0, 2**64 - 1)), waiting_requests=draw(u32),
        prefill_prompt_tokens=col(n_p, u32), prefill_done_tokens=col(n_p, u32),
        prefill_step_tokens=col(n_p, u32), prefill_arrival_ns=col(n_p, ns),
        decode_kv=col(n_d, u32), decode_output_tokens=col(n_d, u32),
        waiting_prompt_tokens=col(n_w, u32), waiting_arrival_ns=col(n_w, ns),
    )


@given(scheduled(), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_step_scheduled_round_trips(message: StepScheduled, dropped: int, source: int) -> None:
    decoded = decode(encode(message, dropped, source))
    assert isinstance(decoded, StepScheduled)
    for field in StepScheduled.__dataclass_fields__:
        want = {"dropped": dropped, "source": source}.get(field, getattr(message, field))
        got = getattr(decoded, field)
        assert (tuple(got) if isinstance(got, tuple) else got) == want, field


def test_step_done_round_trips() -> None:
    message = StepDone(Engine.SGLANG, step_id=7, t_ns=123_456_789, duration_ns=31_000_000)
    assert decode(encode(message, dropped=3, source=4242)) == StepDone(
        Engine.SGLANG, 7, 123_456_789, 31_000_000, 3, 4242)
    assert len(encode(message)) == HEADER.size + 8


def test_long_lists_are_cut_and_totals_stay_exact() -> None:
    n = MAX_ENTRIES + 10
    message = StepScheduled(
        Engine.VLLM, 1, 0, prefill_requests=0, prefill_tokens=0, decode_requests=n,
        decode_kv_tokens=n * 100, waiting_requests=n,
        decode_kv=[100] * n, decode_output_tokens=list(range(n)),
        waiting_prompt_tokens=list(range(n)), waiting_arrival_ns=list(range(n)),
    )
    decoded = decode(encode(message))
    assert isinstance(decoded, StepScheduled)
    assert (decoded.decode_requests, decoded.decode_kv_tokens, decoded.waiting_requests) == (n, n * 100, n)
    assert len(decoded.decode_kv) == MAX_ENTRIES
    assert tuple(decoded.waiting_prompt_tokens) == tuple(range(MAX_ENTRIES))  # the oldest kept


def test_mismatched_columns_and_out_of_range_values_do_not_encode() -> None:
    base = dict(engine=Engine.VLLM, step_id=1, t_ns=0, prefill_requests=1, prefill_tokens=5,
                decode_requests=0, decode_kv_tokens=0, waiting_requests=0)
    with pytest.raises(struct.error):
        encode(StepScheduled(**base, prefill_prompt_tokens=[5]))  # type: ignore[arg-type]
    with pytest.raises(struct.error):
        encode(StepScheduled(**{**base, "prefill_tokens": -1}))  # type: ignore[arg-type]


def _valid() -> bytes:
    return encode(StepScheduled(Engine.VLLM, 3, 10, 1, 512, 2, 900, 1, [512], [0], [512], [5],
                                [400, 500], [3, 4], [256], [9]))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:10], "shorter than the header"),
        (lambda b: b"XX" + b[2:], "not a JouleScale"),
        (lambda b: b[:2] + bytes([VERSION + 1]) + b[3:], "schema version"),
        (lambda b: b[:3] + b"\x09" + b[4:], "unknown message kind"),
        (lambda b: b[:4] + b"\x63" + b[5:], "unknown engine"),
        (lambda b: b[:-1], "counts say"),
        (lambda b: b + b"\x00", "counts say"),
        (lambda b: b[:HEADER.size + 24] + struct.pack("<H", MAX_ENTRIES + 1) + b[HEADER.size + 26:],
         "more entries"),
    ],
)
def test_invalid_datagrams_are_rejected_with_the_reason(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(HookDecodeError, match=reason):
        decode(mutate(_valid()))


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_only_the_decode_error(data: bytes) -> None:
    with contextlib.suppress(HookDecodeError):
        decode(data)


@given(scheduled(), st.integers(0, 400), st.binary(min_size=1, max_size=4))
def test_a_corrupted_valid_message_never_raises_anything_else(message: StepScheduled, at: int,
                                                              junk: bytes) -> None:
    data = bytearray(encode(message))
    at = at % len(data)
    data[at:at + len(junk)] = junk
    with contextlib.suppress(HookDecodeError):
        decode(bytes(data))


def test_binary_is_smaller_than_compact_json() -> None:
    """The reason for a binary layout: a decode step of 64 requests with 8 waiting, with varied
    lengths and real monotonic timestamps (bench/engine_hook.py reports both sizes)."""
    rng = random.Random(7)
    now = time.monotonic_ns()
    message = StepScheduled(Engine.VLLM, 10_000, now, 0, 0, 64, 0, 8,
                            decode_kv=[rng.randrange(100, 8000) for _ in range(64)],
                            decode_output_tokens=[rng.randrange(1, 900) for _ in range(64)],
                            waiting_prompt_tokens=[rng.randrange(10, 8000) for _ in range(8)],
                            waiting_arrival_ns=[now - rng.randrange(10**9) for _ in range(8)])
    as_json = json.dumps({k: getattr(message, k) for k in StepScheduled.__dataclass_fields__},
                         separators=(",", ":"), default=int)
    assert len(encode(message)) < len(as_json)


def test_the_package_needs_nothing_but_the_standard_library() -> None:
    """Engine images install only this distribution: no dependency, and every module imports in
    an interpreter that sees no site-packages (so neither JouleScale nor any third party)."""
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "engine_hook"
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"] == []
    modules = ["schema", "transport", "runtime", "vllm_hook", "sglang_plugin"]
    code = f"import sys; sys.path.insert(0, {str(root)!r}); " + "; ".join(
        f"import joulescale_hook.{m}" for m in modules)
    subprocess.run([sys.executable, "-S", "-I", "-c", code], check=True, timeout=60)
