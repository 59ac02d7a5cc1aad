"""Fetching a /metrics page with httpx: every transport failure leaves as MetricsUnavailableError.

The page comes from a tenant's engine, so the read is bounded: a total deadline over the whole
exchange (httpx's own timeouts bound each phase only, so a server dripping one byte a second
would never trip them), at most ``max_page_bytes`` (a larger declared length is refused before
reading a byte, and the count is checked while the body streams), no compressed transfer (the
raw bytes are read: a small gzip body could expand without bound), no redirect (the engine must
not send the privileged agent to another address), no proxy from the environment. The bytes are
returned undecoded: decoding and parsing run off the event loop (engines.reader).
"""

from __future__ import annotations

import asyncio

import httpx

from joulescale_agent.engines.promtext import DEFAULT_LIMITS
from joulescale_agent.errors import MetricsLimitError, MetricsUnavailableError

MAX_PAGE_BYTES = DEFAULT_LIMITS.max_page_chars


def _declared_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise MetricsUnavailableError(f"unusable Content-Length {value[:20]!r}")
    return int(value)


class Scraper:
    """One pooled HTTP client for all engine instances of the node."""

    def __init__(self, timeout_s: float, max_page_bytes: int = MAX_PAGE_BYTES) -> None:
        self._timeout_s = timeout_s
        self._max_page_bytes = max_page_bytes
        self._client: httpx.AsyncClient | None = None

    def _pool(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout_s),
                follow_redirects=False,
                trust_env=False,
                headers={"Accept-Encoding": "identity"},
            )
        return self._client

    async def fetch(self, url: str) -> bytes:
        client = self._pool()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._read(client, url)
        except TimeoutError:
            raise MetricsUnavailableError(f"{url} timed out") from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as error:
            raise MetricsUnavailableError(f"{url}: {error.__class__.__name__}: {error}") from error

    async def _read(self, client: httpx.AsyncClient, url: str) -> bytes:
        limit = self._max_page_bytes
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise MetricsUnavailableError(f"{url} answered HTTP {response.status_code}")
            declared = _declared_length(response)
            if declared is not None and declared > limit:
                raise MetricsLimitError(f"{url} announced {declared} bytes (limit {limit})")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > limit:
                    raise MetricsLimitError(f"{url} sent more than {limit} bytes")
                chunks.append(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
