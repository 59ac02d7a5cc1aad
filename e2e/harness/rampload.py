"""Open-loop load at a rate a test changes while it runs (a ramp), spread over the engines that
serve now, as a router spreads it over a service's pods.

Arrivals are Poisson at ``rate_rps`` (seeded: the same run sends the same gaps). Each request is
the P/D handshake of ``e2e.simengine.loadgen.send_request`` (prefill with one output token, then
decode with the rest), sent to the next prefill and the next decode engine in turn among
``urls(role)`` at that moment. A request that fails (its engine stopped under it when its pod
went) is counted, not retried. Runs its own event loop in a thread, so a synchronous test can
drive it.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from itertools import count

import aiohttp

from e2e.simengine.loadgen import send_request
from joulescale.twin.traces import TraceRequest

MAX_LAG_S = 1.0
"""Behind schedule by more than this (a stalled host), the schedule restarts from now instead of
sending the missed arrivals in one burst."""


class RampLoad:
    """``with RampLoad(engines.urls, 4000, 128) as load: load.rate_rps = 9.0``."""

    def __init__(
        self, urls: Callable[[str], list[str]], prompt_tokens: int, output_tokens: int, seed: int = 16
    ) -> None:
        self._urls = urls
        self._request = TraceRequest(0.0, prompt_tokens, output_tokens)
        self._rng = random.Random(seed)
        self.rate_rps = 0.0
        self.sent = 0
        self.completed = 0
        self.failed = 0
        self.unrouted = 0
        """Arrivals while a role had no serving engine (not sent)."""
        self._turn = count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="ramp-load", daemon=True)

    async def _run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
            start_s = next_s = time.monotonic()
            while not self._stop.is_set():
                rate = self.rate_rps
                if rate <= 0:
                    await asyncio.sleep(0.1)
                    next_s = time.monotonic()
                    continue
                next_s += self._rng.expovariate(rate)
                now_s = time.monotonic()
                if now_s - next_s > MAX_LAG_S:
                    next_s = now_s
                await asyncio.sleep(max(0.0, next_s - now_s))
                prefill, decode = self._urls("prefill"), self._urls("decode")
                if not prefill or not decode:
                    self.unrouted += 1
                    continue
                turn = next(self._turn)
                task = asyncio.create_task(
                    self._send(session, prefill[turn % len(prefill)], decode[turn % len(decode)], start_s)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, session: aiohttp.ClientSession, prefill: str, decode: str, start_s: float) -> None:
        self.sent += 1
        try:
            await send_request(session, prefill, decode, self._request, start_s, time.monotonic)
        except (aiohttp.ClientError, TimeoutError):
            self.failed += 1
            return
        self.completed += 1

    def __enter__(self) -> RampLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def summary(self) -> str:
        return (f"{self.sent} requests sent, {self.completed} completed, {self.failed} failed, "
                f"{self.unrouted} arrivals without a serving engine")
