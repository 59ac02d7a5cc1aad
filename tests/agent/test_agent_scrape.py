"""The agent's engine scraper against a real loopback HTTP server that misbehaves on purpose.

The server writes raw HTTP/1.1, so each test controls exactly what the engine sends: headers
that lie, a body that drips, a body that never ends, a redirect, a compressed body.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from joulescale_agent.engines.scrape import Scraper
from joulescale_agent.errors import MetricsLimitError, MetricsUnavailableError

PAGE = b'vllm:num_requests_running{engine="0"} 1.0\n'
Respond = Callable[[asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """Accepts connections and answers every request with ``respond``; counts what it saw."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.connections = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                await self.respond(writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    def url(self, path: str = "/metrics") -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{path}"


def answer(status: str, body: bytes, *headers: str) -> Respond:
    async def respond(writer: asyncio.StreamWriter) -> None:
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    return respond


@pytest.fixture
async def scraper() -> AsyncIterator[Scraper]:
    scraper = Scraper(timeout_s=0.5, max_page_bytes=10_000)
    yield scraper
    await scraper.close()


async def test_a_page_is_read_raw_and_every_scrape_reuses_one_pooled_connection(scraper: Scraper) -> None:
    async with RawServer(answer("200 OK", PAGE)) as server:
        pages = [await scraper.fetch(server.url()) for _ in range(5)]
    assert pages == [PAGE] * 5
    assert server.connections == 1
    assert all(b"accept-encoding: identity" in r.lower() for r in server.requests)


async def test_a_page_that_drips_past_the_total_deadline_is_unavailable(scraper: Scraper) -> None:
    """Each byte comes within httpx's per-read timeout; only the total deadline stops it."""

    async def drip(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            writer.write(b"#")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with RawServer(drip) as server:
        started = asyncio.get_running_loop().time()
        with pytest.raises(MetricsUnavailableError, match="timed out"):
            await scraper.fetch(server.url())
        assert asyncio.get_running_loop().time() - started < 1.0


async def test_a_declared_length_over_the_cap_is_refused_before_the_body(scraper: Scraper) -> None:
    async def huge(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n")

    async with RawServer(huge) as server:
        with pytest.raises(MetricsLimitError, match="announced 50000000"):
            await scraper.fetch(server.url())


async def test_an_endless_chunked_body_is_cut_at_the_cap_while_streaming(scraper: Scraper) -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"#" * 4096
        for _ in range(10_000):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()

    async with RawServer(endless) as server:
        with pytest.raises(MetricsLimitError, match="more than 10000 bytes"):
            await scraper.fetch(server.url())


async def test_a_compressed_body_is_returned_as_sent_never_inflated(scraper: Scraper) -> None:
    bomb = gzip.compress(b"#" * 5_000_000)
    assert len(bomb) < 10_000
    async with RawServer(answer("200 OK", bomb, "Content-Encoding: gzip")) as server:
        assert await scraper.fetch(server.url()) == bomb


@pytest.mark.parametrize(
    ("respond", "message"),
    [
        (answer("302 Found", b"", "Location: /elsewhere"), "HTTP 302"),
        (answer("500 Internal Server Error", b"boom"), "HTTP 500"),
        (answer("404 Not Found", b""), "HTTP 404"),
    ],
)
async def test_a_redirect_or_an_error_status_is_unavailable_and_never_followed(
    scraper: Scraper, respond: Respond, message: str
) -> None:
    async with RawServer(respond) as server:
        with pytest.raises(MetricsUnavailableError, match=message):
            await scraper.fetch(server.url())
    assert [r.split(b" ")[1] for r in server.requests] == [b"/metrics"]


async def test_a_closed_port_and_a_garbled_answer_are_unavailable(scraper: Scraper) -> None:
    async def garbage(writer: asyncio.StreamWriter) -> None:
        writer.write(b"not http at all\r\n\r\n")

    async with RawServer(garbage) as server:
        with pytest.raises(MetricsUnavailableError):
            await scraper.fetch(server.url())
        url = server.url()
    with pytest.raises(MetricsUnavailableError):
        await scraper.fetch(url)
    with pytest.raises(MetricsUnavailableError):
        await scraper.fetch("not a url")
