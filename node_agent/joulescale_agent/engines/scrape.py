"""Fetching a /metrics page: every transport failure leaves as MetricsUnavailableError.

The page comes from a tenant's engine, so the read is bounded: the total timeout, at most
``max_page_bytes`` (a larger declared length is refused before reading a byte), no compressed
transfer (a small gzip body could expand without bound), no redirect (the engine must not send
the privileged agent to another address). The bytes are returned undecoded: decoding and
parsing run off the event loop (engines.reader).
"""

from __future__ import annotations

import aiohttp

from joulescale_agent.engines.promtext import DEFAULT_LIMITS
from joulescale_agent.errors import MetricsLimitError, MetricsUnavailableError

MAX_PAGE_BYTES = DEFAULT_LIMITS.max_page_chars


class Scraper:
    """One pooled HTTP session for all engine instances of the node."""

    def __init__(self, timeout_s: float, max_page_bytes: int = MAX_PAGE_BYTES) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_page_bytes = max_page_bytes
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, url: str) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, auto_decompress=False, headers={"Accept-Encoding": "identity"}
            )
        limit = self._max_page_bytes
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise MetricsUnavailableError(f"{url} answered HTTP {response.status}")
                if response.content_length is not None and response.content_length > limit:
                    raise MetricsLimitError(
                        f"{url} announced {response.content_length} bytes (limit {limit})"
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        raise MetricsLimitError(f"{url} sent more than {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise MetricsUnavailableError(f"{url} timed out") from None
        except (aiohttp.ClientError, OSError, ValueError) as error:
            raise MetricsUnavailableError(f"{url}: {error.__class__.__name__}: {error}") from error
        return b"".join(chunks)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
