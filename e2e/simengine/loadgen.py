"""Replays trace requests against a prefill and a decode engine (the P/D handshake of a proxy:
prefill with max_tokens=1, then decode with the full length) and collects their latency."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from joulescale.twin.traces import TraceRequest
from joulescale_agent.clock import Clock, monotonic


@dataclass(frozen=True, slots=True)
class RequestResult:
    sent_s: float
    """Seconds since the replay started."""
    ttft_s: float
    """Client-side: from sending to the prefill's answer."""
    tpot_s: float | None
    """Decode engine's own time per output token after the first."""
    decode_arrival_s: float | None = None
    """When the decode engine received it (its clock; None: no decode request)."""


async def send_request(
    session: aiohttp.ClientSession,
    prefill_url: str,
    decode_url: str,
    request: TraceRequest,
    start_s: float,
    clock: Clock,
) -> RequestResult:
    """One request through the P/D pair; ``start_s`` is what ``sent_s`` counts from."""
    prompt = [1] * request.prompt_tokens
    sent_s = clock()
    async with session.post(
        f"{prefill_url}/v1/completions", json={"prompt": prompt, "max_tokens": 1, "stream": False}
    ) as response:
        response.raise_for_status()
        await response.json()
    ttft_s = clock() - sent_s
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
    return RequestResult(sent_s - start_s, ttft_s, tpot_s, decode_arrival_s)


async def replay(
    requests: list[TraceRequest],
    prefill_url: str,
    decode_url: str,
    start_s: float | None = None,
    clock: Clock = monotonic,
) -> list[RequestResult]:
    """Send each request at its arrival time after ``start_s`` (``clock``'s seconds; default
    now), open loop, and wait for all of them."""
    start_s = clock() if start_s is None else start_s
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        tasks = []
        for request in requests:
            delay_s = start_s + request.arrival_s - clock()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            tasks.append(asyncio.create_task(send_request(session, prefill_url, decode_url, request, start_s, clock)))
        return list(await asyncio.gather(*tasks))
