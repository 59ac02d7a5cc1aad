"""An engine hook datagram -> the core's hook message, checked: the socket is a tenant's to write.

The wire schema is ``joulescale_hook.schema`` (the package engine images install); its decoder
checks the layout (magic, version, lengths, entry counts). This module checks the values the
schema cannot (counts against totals, sizes a real engine could have, finite durations) and
converts them into ``joulescale.engines.hook`` types, the only ones the rest of the agent sees.
Anything else raises ``HookMessageError``; nothing here trusts a value it has not bounded.
"""

from __future__ import annotations

from collections.abc import Sequence

from joulescale.engines.hook import HookSchedule, HookStepDone, ScheduledDecode, ScheduledPrefill
from joulescale.engines.observation import QueuedPrompt
from joulescale_agent.errors import HookMessageError
from joulescale_hook.schema import HookDecodeError, StepDone, StepScheduled, decode

MAX_REQUESTS = 1_000_000
"""Running or waiting requests one instance may report (the /metrics adapter's bound too)."""
MAX_TOKENS = 2**40
"""Tokens one total may hold; far above any KV cache, far below float precision trouble."""
MAX_STEP_S = 3600.0
_NS = 1e-9


def _bounded(name: str, value: int, limit: int) -> int:
    if not 0 <= value <= limit:
        raise HookMessageError(f"{name} {value} out of range")
    return value


def _column(name: str, values: Sequence[int], count: int) -> Sequence[int]:
    if len(values) != count:
        raise HookMessageError(f"{name}: {len(values)} values for {count} entries")
    return values


def read_datagram(data: bytes) -> tuple[int, HookSchedule | HookStepDone]:
    """One datagram as (its publishing process, the core's message); ``HookMessageError`` for
    anything not sane."""
    try:
        message = decode(data)
    except HookDecodeError as error:
        raise HookMessageError(str(error)) from None
    except Exception as error:  # a decoder bug must read as a refused datagram, never a crash
        raise HookMessageError(f"undecodable datagram ({type(error).__name__})") from None
    return message.source, to_core(message)


def to_core(message: StepScheduled | StepDone) -> HookSchedule | HookStepDone:
    at_s = message.t_ns * _NS
    step_id = _bounded("step id", message.step_id, 2**63 - 1)
    if isinstance(message, StepDone):
        duration_s = message.duration_ns * _NS
        if not 0.0 <= duration_s <= MAX_STEP_S:
            raise HookMessageError(f"step duration {duration_s:.3g} s out of range")
        return HookStepDone(step_id, at_s, duration_s)
    m = message
    n_p, n_d, n_w = len(m.prefill_prompt_tokens), len(m.decode_kv), len(m.waiting_prompt_tokens)
    prefill_requests = _bounded("prefill requests", m.prefill_requests, MAX_REQUESTS)
    decode_requests = _bounded("decode requests", m.decode_requests, MAX_REQUESTS)
    waiting_requests = _bounded("waiting requests", m.waiting_requests, MAX_REQUESTS)
    if n_p > prefill_requests or n_d > decode_requests or n_w > waiting_requests:
        raise HookMessageError("more entries than the totals count")
    prefill_tokens = _bounded("prefill tokens", m.prefill_tokens, MAX_TOKENS)
    decode_kv_tokens = _bounded("decode KV tokens", m.decode_kv_tokens, MAX_TOKENS)
    done = _column("prefill done tokens", m.prefill_done_tokens, n_p)
    chunk = _column("prefill step tokens", m.prefill_step_tokens, n_p)
    arrival = _column("prefill arrivals", m.prefill_arrival_ns, n_p)
    prefill = []
    for i, prompt in enumerate(m.prefill_prompt_tokens):
        if done[i] + chunk[i] > prompt:
            raise HookMessageError(f"a chunk past its prompt ({done[i]} + {chunk[i]} > {prompt})")
        prefill.append(ScheduledPrefill(prompt, done[i], chunk[i], arrival[i] * _NS))
    output = _column("decode output tokens", m.decode_output_tokens, n_d)
    decoding = []
    for i, kv in enumerate(m.decode_kv):
        if output[i] > kv:
            raise HookMessageError(f"{output[i]} output tokens in a KV cache of {kv}")
        decoding.append(ScheduledDecode(kv, output[i]))
    waiting_arrival = _column("waiting arrivals", m.waiting_arrival_ns, n_w)
    waiting = tuple(QueuedPrompt(prompt, waiting_arrival[i] * _NS) for i, prompt in enumerate(m.waiting_prompt_tokens))
    return HookSchedule(step_id, at_s, tuple(prefill), tuple(decoding), waiting,
                        prefill_requests=prefill_requests, prefill_tokens=prefill_tokens,
                        decode_requests=decode_requests, decode_kv_tokens=decode_kv_tokens,
                        waiting_requests=waiting_requests)
