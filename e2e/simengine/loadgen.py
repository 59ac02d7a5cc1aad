"""Replays trace requests against a prefill and a decode engine (the P/D handshake of a proxy:
prefill with max_tokens=1, then decode with the full length) and collects their latency."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from joulescale.twin.traces import TraceRequest


@dataclass(frozen=True, slots=True)
class RequestResult:
    sent_s: float
    """Seconds since the replay started."""
    ttft_s: float
    """Client-side: from sending to the prefill's answer."""
    tpot_s: float | None
    """Decode engine's own time per output token after the first."""
    decode_arrival_s: float | None = None
    """When the decode engine received it (its monotonic clock; None: no decode request)."""
    prefill_arrival_s: float | None = None
    """When the prefill engine received it (its monotonic clock; None: the engine did not say)."""


async def _one(
    session: aiohttp.ClientSession, prefill_url: str, decode_url: str, request: TraceRequest, start_s: float
) -> RequestResult:
    prompt = [1] * request.prompt_tokens
    sent_s = time.monotonic()
    async with session.post(
        f"{prefill_url}/v1/completions", json={"prompt": prompt, "max_tokens": 1, "stream": False}
    ) as response:
        response.raise_for_status()
        prefill_body = await response.json()
    ttft_s = time.monotonic() - sent_s
    prefill_arrival_s = prefill_body.get("sim_timing", {}).get("arrival_s")
    tpot_s = None
    decode_arrival_s = None
    if request.output_tokens > 1:
        async with session.post(
            f"{decode_url}/v1/completions", json={"prompt": prompt, "max_tokens": request.output_tokens - 1}
        ) as response:
            response.raise_for_status()
            body = await response.json()
        tpot_s = body["sim_timing"]["tpot_s"]
        decode_arrival_s = body["sim_timing"].get("arrival_s")
    return RequestResult(sent_s - start_s, ttft_s, tpot_s, decode_arrival_s, prefill_arrival_s)


async def replay(
    requests: list[TraceRequest], prefill_url: str, decode_url: str, start_s: float | None = None
) -> list[RequestResult]:
    """Send each request at its arrival time after ``start_s`` (monotonic; default now), open
    loop, and wait for all of them."""
    start_s = time.monotonic() if start_s is None else start_s
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        tasks = []
        for request in requests:
            delay_s = start_s + request.arrival_s - time.monotonic()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            tasks.append(asyncio.create_task(_one(session, prefill_url, decode_url, request, start_s)))
        return list(await asyncio.gather(*tasks))
