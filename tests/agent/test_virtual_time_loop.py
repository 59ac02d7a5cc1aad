"""The virtual-time loop under the differential test: time moves only when everything waits."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from e2e.harness.agentprocs import free_port
from e2e.harness.virtualtime import run_virtual


def test_a_long_sleep_takes_no_real_time_and_moves_the_clock_by_exactly_its_length() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        before = loop.time()
        await asyncio.sleep(3600.0)
        return before, loop.time()

    started = time.monotonic()
    before, after = run_virtual(main())
    assert time.monotonic() - started < 5.0
    assert after - before == 3600.0


def test_timers_fire_in_virtual_order() -> None:
    fired: list[tuple[str, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def at(name: str, delay_s: float) -> None:
            await asyncio.sleep(delay_s)
            fired.append((name, loop.time() - start))

        await asyncio.gather(at("late", 0.3), at("early", 0.1), at("middle", 0.2))

    run_virtual(main())
    assert [name for name, _ in fired] == ["early", "middle", "late"]
    assert [round(t, 9) for _, t in fired] == [0.1, 0.2, 0.3]


def test_loopback_http_and_worker_threads_take_no_virtual_time() -> None:
    """A real HTTP round trip on loopback and a thread that blocks 50 ms of real time both finish
    at the instant they started, and a timer due meanwhile fires after them, not before."""

    async def main() -> tuple[float, float, list[str]]:
        loop = asyncio.get_running_loop()

        async def page(_: web.Request) -> web.Response:
            return web.Response(text="x" * 100_000)

        app = web.Application()
        app.router.add_get("/", page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        order: list[str] = []

        async def timer() -> None:
            await asyncio.sleep(0.001)
            order.append("timer")

        pending = asyncio.create_task(timer())
        try:
            start = loop.time()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = await reader.read()
            writer.close()
            http_s = loop.time() - start
            assert len(body) > 100_000
            start = loop.time()
            await asyncio.to_thread(time.sleep, 0.05)
            order.append("thread")
            thread_s = loop.time() - start
        finally:
            await pending
            await runner.cleanup()
        return http_s, thread_s, order

    http_s, thread_s, order = run_virtual(main())
    assert http_s == 0.0
    assert thread_s == 0.0
    assert order == ["thread", "timer"]
