"""Observation builders shared by the control tests."""

from __future__ import annotations

from pathlib import Path

from joulescale.control import DecodeProgress, Observation, PolicyContext, QueuedPrompt, Slo
from joulescale.profiles import load_profile_file

_DESIGN = Path(__file__).resolve().parents[2] / "fixtures" / "profiles"
TP8 = load_profile_file(_DESIGN / "h100-sxm-llama-70b-tp8.yaml")
TP4 = load_profile_file(_DESIGN / "h100-sxm-llama-70b-tp4.yaml")
"""The design-table physics these scenarios were built on (tests/fixtures/profiles/README.md)."""


def context(**overrides: object) -> PolicyContext:
    settings: dict[str, object] = {"profile": TP8, "slo": Slo(ttft_ms=600, tpot_ms=100)}
    settings.update(overrides)
    return PolicyContext(**settings)  # type: ignore[arg-type]


def decode_obs(
    batch_size: int = 64,
    context_tokens: int = 64_000,
    sm_clock_mhz: int = 1980,
    now_s: float = 10.0,
    kv_cache_usage: float = 0.3,
    **extra: object,
) -> Observation:
    return Observation(
        phase="decode",
        now_s=now_s,
        sm_clock_mhz=sm_clock_mhz,
        running_requests=batch_size,
        waiting_requests=0,
        kv_cache_usage=kv_cache_usage,
        context_tokens=context_tokens,
        **extra,  # type: ignore[arg-type]
    )


def progress(
    count: int, output_tokens: int, tpot_s: float, context_each: int = 1000
) -> tuple[DecodeProgress, ...]:
    return tuple(DecodeProgress(output_tokens, output_tokens * tpot_s, context_each) for _ in range(count))


def prefill_obs(
    waiting: int = 3,
    running: int = 1,
    oldest_wait_s: float | None = 0.05,
    sm_clock_mhz: int = 1980,
    now_s: float = 10.0,
    context_tokens: int = 0,
    **extra: object,
) -> Observation:
    return Observation(
        phase="prefill",
        now_s=now_s,
        sm_clock_mhz=sm_clock_mhz,
        running_requests=running,
        waiting_requests=waiting,
        kv_cache_usage=0.1,
        context_tokens=context_tokens,
        oldest_wait_s=oldest_wait_s,
        **extra,  # type: ignore[arg-type]
    )


def queue(lengths: list[int], waits_s: list[float], now_s: float = 10.0) -> tuple[QueuedPrompt, ...]:
    return tuple(QueuedPrompt(n, now_s - w) for n, w in zip(lengths, waits_s, strict=True))
