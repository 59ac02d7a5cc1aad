"""Fetching a /metrics page: every transport failure leaves as MetricsUnavailableError."""

from __future__ import annotations

import aiohttp

from joulescale_agent.errors import MetricsUnavailableError

MAX_PAGE_BYTES = 4 * 1024 * 1024


class Scraper:
    """One pooled HTTP session for all engine instances of the node."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, url: str) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    raise MetricsUnavailableError(f"{url} answered HTTP {response.status}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > MAX_PAGE_BYTES:
                        raise MetricsUnavailableError(f"{url} sent more than {MAX_PAGE_BYTES} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise MetricsUnavailableError(f"{url} timed out") from None
        except aiohttp.ClientError as error:
            raise MetricsUnavailableError(f"{url}: {error.__class__.__name__}: {error}") from error
        return b"".join(chunks).decode("utf-8", errors="replace")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
