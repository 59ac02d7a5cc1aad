"""The hook's wire schema: one datagram per message, little-endian, fixed header, column arrays.

Two messages per engine step. ``StepScheduled`` leaves the scheduler before the step runs (vLLM
``schedule()``, SGLang's BEFORE hook on ``run_batch``) and says what the step will compute and
what waits; ``StepDone`` follows once the step's output is processed, with its measured duration.
Timestamps are ``time.monotonic_ns()``: CLOCK_MONOTONIC is one clock for every process of a host,
so the agent compares them with its own without translation.

Binary rather than JSON lines: the publisher is on the engine's scheduling path and a
``struct.pack`` of column arrays is both smaller and cheaper than ``json.dumps`` of the same
numbers (bench/engine_hook.py measures both). Any change of layout bumps ``VERSION``; a reader
rejects versions it does not know, and every length is checked before it is trusted, because
the socket is writable from a tenant's container.

Header (``HEADER``, 30 bytes): magic ``b"JH"``, version u8, kind u8, engine u8, pad,
dropped u32 (messages the publisher dropped so far), source u32 (the publishing process: one pod
may run several schedulers, e.g. one per data-parallel rank, each with its own step ids),
step_id u64, t_ns i64.
``StepScheduled`` body: prefill_requests u32, prefill_tokens u32, decode_requests u32,
decode_kv_tokens u64, waiting_requests u32, then three entry counts u16 (prefill, decode,
waiting) and the columns: prefill prompt_tokens u32[], done_tokens u32[], step_tokens u32[],
arrival_ns i64[]; decode kv_tokens u32[], output_tokens u32[]; waiting prompt_tokens u32[],
arrival_ns i64[]. ``StepDone`` body: duration_ns u64.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"JH"
VERSION = 1
MAX_ENTRIES = 1024
"""Per-request entries kept per list; the totals stay exact when a list is cut (waiting: the
oldest are kept). Bounds a datagram to about 37 kB, well under a Unix socket's send buffer."""
MAX_DATAGRAM = 64 * 1024
"""What a reader needs to receive any valid message."""

HEADER = struct.Struct("<2sBBBxIIQq")
_SCHEDULED = struct.Struct("<IIIQIHHH")
_DONE = struct.Struct("<Q")
_U32_MAX = 2**32 - 1


class Kind(IntEnum):
    STEP_SCHEDULED = 1
    STEP_DONE = 2


class Engine(IntEnum):
    VLLM = 1
    SGLANG = 2
    SIMULATED = 3


class HookDecodeError(ValueError):
    """A datagram that is not a valid message of this schema version."""


@dataclass(frozen=True, slots=True)
class StepScheduled:
    """One scheduling decision, published before the step runs. Per-request columns are
    parallel sequences; a request is in prefill while its prompt is not fully computed (a chunk of
    a long prompt counts as prefill, with ``done`` tokens before it and ``step`` tokens in it)."""

    engine: Engine
    step_id: int
    t_ns: int
    prefill_requests: int
    prefill_tokens: int
    """Prompt tokens this step computes, chunks included."""
    decode_requests: int
    decode_kv_tokens: int
    """KV (context) tokens of the decode requests in this step, summed."""
    waiting_requests: int
    prefill_prompt_tokens: Sequence[int] = ()
    prefill_done_tokens: Sequence[int] = ()
    prefill_step_tokens: Sequence[int] = ()
    prefill_arrival_ns: Sequence[int] = ()
    decode_kv: Sequence[int] = ()
    decode_output_tokens: Sequence[int] = ()
    waiting_prompt_tokens: Sequence[int] = ()
    waiting_arrival_ns: Sequence[int] = ()
    dropped: int = 0
    """Messages the publisher had dropped when it sent this one (set by the encoder)."""
    source: int = 0
    """The publishing process's id (set by the encoder): step ids count per source."""


@dataclass(frozen=True, slots=True)
class StepDone:
    """The step ``step_id`` finished and its output was processed at ``t_ns``."""

    engine: Engine
    step_id: int
    t_ns: int
    duration_ns: int
    dropped: int = 0
    source: int = 0


Message = StepScheduled | StepDone


def encode(message: Message, dropped: int = 0, source: int = 0) -> bytes:
    """The datagram for ``message``; ``dropped`` is the publisher's count so far and ``source``
    its process id. Raises
    ``struct.error`` for values out of range (the publisher drops and counts such a message)."""
    if isinstance(message, StepDone):
        head = HEADER.pack(MAGIC, VERSION, Kind.STEP_DONE, message.engine, min(dropped, _U32_MAX),
                           source, message.step_id, message.t_ns)
        return head + _DONE.pack(message.duration_ns)
    m = message
    n_p = min(len(m.prefill_prompt_tokens), MAX_ENTRIES)
    n_d = min(len(m.decode_kv), MAX_ENTRIES)
    n_w = min(len(m.waiting_prompt_tokens), MAX_ENTRIES)
    if not (len(m.prefill_done_tokens) >= n_p and len(m.prefill_step_tokens) >= n_p
            and len(m.prefill_arrival_ns) >= n_p and len(m.decode_output_tokens) >= n_d
            and len(m.waiting_arrival_ns) >= n_w):
        raise struct.error("columns of one list differ in length")
    parts = [
        HEADER.pack(MAGIC, VERSION, Kind.STEP_SCHEDULED, m.engine, min(dropped, _U32_MAX),
                    source, m.step_id, m.t_ns),
        _SCHEDULED.pack(m.prefill_requests, m.prefill_tokens, m.decode_requests, m.decode_kv_tokens,
                        m.waiting_requests, n_p, n_d, n_w),
        struct.pack(f"<{3 * n_p}I", *m.prefill_prompt_tokens[:n_p], *m.prefill_done_tokens[:n_p],
                    *m.prefill_step_tokens[:n_p]),
        struct.pack(f"<{n_p}q", *m.prefill_arrival_ns[:n_p]),
        struct.pack(f"<{2 * n_d}I", *m.decode_kv[:n_d], *m.decode_output_tokens[:n_d]),
        struct.pack(f"<{n_w}I{n_w}q", *m.waiting_prompt_tokens[:n_w], *m.waiting_arrival_ns[:n_w]),
    ]
    return b"".join(parts)


def decode(data: bytes) -> Message:
    """The message in ``data``; raises ``HookDecodeError`` for anything else (wrong magic,
    version or kind, a length that does not match its counts, counts over ``MAX_ENTRIES``)."""
    if len(data) < HEADER.size:
        raise HookDecodeError(f"{len(data)} bytes, shorter than the header")
    magic, version, kind, engine_code, dropped, source, step_id, t_ns = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise HookDecodeError("not a JouleScale hook message")
    if version != VERSION:
        raise HookDecodeError(f"schema version {version}, this reader knows {VERSION}")
    try:
        engine = Engine(engine_code)
    except ValueError:
        raise HookDecodeError(f"unknown engine code {engine_code}") from None
    body = memoryview(data)[HEADER.size:]
    if kind == Kind.STEP_DONE:
        if len(body) != _DONE.size:
            raise HookDecodeError(f"step-done body of {len(body)} bytes")
        (duration_ns,) = _DONE.unpack_from(body)
        return StepDone(engine, step_id, t_ns, duration_ns, dropped, source)
    if kind != Kind.STEP_SCHEDULED:
        raise HookDecodeError(f"unknown message kind {kind}")
    if len(body) < _SCHEDULED.size:
        raise HookDecodeError("step-scheduled body shorter than its fixed part")
    p_req, p_tok, d_req, d_kv, w_req, n_p, n_d, n_w = _SCHEDULED.unpack_from(body)
    if max(n_p, n_d, n_w) > MAX_ENTRIES:
        raise HookDecodeError("more entries than a message may carry")
    expected = _SCHEDULED.size + n_p * 20 + n_d * 8 + n_w * 12
    if len(body) != expected:
        raise HookDecodeError(f"step-scheduled body of {len(body)} bytes, its counts say {expected}")
    at = _SCHEDULED.size
    p_u32 = struct.unpack_from(f"<{3 * n_p}I", body, at)
    at += 12 * n_p
    p_arrival = struct.unpack_from(f"<{n_p}q", body, at)
    at += 8 * n_p
    d_u32 = struct.unpack_from(f"<{2 * n_d}I", body, at)
    at += 8 * n_d
    w_prompt = struct.unpack_from(f"<{n_w}I", body, at)
    w_arrival = struct.unpack_from(f"<{n_w}q", body, at + 4 * n_w)
    return StepScheduled(
        engine=engine, step_id=step_id, t_ns=t_ns,
        prefill_requests=p_req, prefill_tokens=p_tok, decode_requests=d_req, decode_kv_tokens=d_kv,
        waiting_requests=w_req,
        prefill_prompt_tokens=p_u32[:n_p], prefill_done_tokens=p_u32[n_p:2 * n_p],
        prefill_step_tokens=p_u32[2 * n_p:], prefill_arrival_ns=p_arrival,
        decode_kv=d_u32[:n_d], decode_output_tokens=d_u32[n_d:],
        waiting_prompt_tokens=w_prompt, waiting_arrival_ns=w_arrival,
        dropped=dropped,
        source=source,
    )
