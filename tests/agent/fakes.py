"""Seams for the agent tests: a real loopback metrics server with switchable behaviour, and a
scripted brain factory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from aiohttp import web

from joulescale.control.policy import DecisionReason, Slo
from joulescale.engines.observation import Observation
from joulescale_agent.control.instance import EngineInstance, InstancePolicy

PAGE = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="m"}} {running}
vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}
vllm:kv_cache_usage_perc{{engine="0",model_name="m"}} 0.1
vllm:generation_tokens_total{{engine="0",model_name="m"}} {tokens}
"""


def site_port(site: web.TCPSite) -> int:
    """The port a site bound to after asking for port 0."""
    server = cast(asyncio.Server, site._server)
    return int(server.sockets[0].getsockname()[1])


class MetricsServer:
    """Serves a vLLM-like page on 127.0.0.1; ``mode`` switches to bad behaviour on the fly."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | html | http500 | slow | truncated | redirect
        self.pages: Callable[[str], str | bytes] | None = None
        """When set, serves what it returns for the good page (a hostile page, say)."""
        self.running = 4
        self.waiting = 0
        self.tokens = 0
        self.hits = 0
        self.elsewhere_hits = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, _: web.Request) -> web.Response:
        self.hits += 1
        self.tokens += 10
        page = PAGE.format(running=self.running, waiting=self.waiting, tokens=self.tokens)
        if self.mode == "html":
            return web.Response(text="<html><body>upstream error</body></html>", content_type="text/html")
        if self.mode == "http500":
            return web.Response(status=500, text="boom")
        if self.mode == "redirect":
            raise web.HTTPFound("/elsewhere")
        if self.mode == "slow":
            await asyncio.sleep(2.0)
        if self.mode == "truncated":
            page = page[:-7]
        if self.pages is not None:
            body = self.pages(page)
            return web.Response(body=body.encode() if isinstance(body, str) else body)
        return web.Response(text=page)

    async def _elsewhere(self, _: web.Request) -> web.Response:
        self.elsewhere_hits += 1
        return web.Response(text=PAGE.format(running=1, waiting=0, tokens=0))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        app.router.add_get("/elsewhere", self._elsewhere)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site_port(site)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class ScriptedBrain:
    """Asks for ``target_mhz`` (or keeps the clock when None) and records what it saw."""

    target_mhz: int | None
    seen: list[Observation] = field(default_factory=list)
    resets: int = 0

    def decide(self, observation: Observation) -> tuple[DecisionReason, int | None]:
        self.seen.append(observation)
        if self.target_mhz is None or self.target_mhz == observation.sm_clock_mhz:
            return DecisionReason.HOLD, None
        return DecisionReason.SLO_FIT, self.target_mhz

    def reset(self) -> None:
        self.resets += 1


@dataclass
class ScriptedBrains:
    """Builds a ScriptedBrain per policy: the target is the policy's base clock."""

    built: list[tuple[EngineInstance, InstancePolicy]] = field(default_factory=list)
    brains: list[ScriptedBrain] = field(default_factory=list)

    def build(
        self, instance: EngineInstance, policy: InstancePolicy, supported_mhz: tuple[int, ...]
    ) -> ScriptedBrain | None:
        self.built.append((instance, policy))
        if policy.policy == "off":
            return None
        brain = ScriptedBrain(policy.base_clock_mhz)
        self.brains.append(brain)
        return brain


CLOCKS = tuple(range(345, 1981, 15))
"""The H100's SM clocks in 15 MHz steps, as the fake GPUs report them."""
SCRIPTED_POLICY = InstancePolicy(
    "scripted", Slo(ttft_ms=500, tpot_ms=50), "h100-sxm-llama-8b-tp1", base_clock_mhz=1005
)


async def eventually(predicate: Callable[[], object], timeout_s: float = 2.0, poll_s: float = 0.01) -> None:
    """Wait on the event loop until ``predicate()`` is true, or fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if predicate():
            return
        await asyncio.sleep(poll_s)
    raise AssertionError("condition not met in time")
