"""The agent process's lifecycle: recover leftovers, follow discovery, shut down clean."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from joulescale_agent.clock import Clock
from joulescale_agent.control.brain import BrainFactory
from joulescale_agent.control.instance import EngineInstance, InstancePolicy, LoopSettings
from joulescale_agent.control.loop import InstanceLoop
from joulescale_agent.control.supervisor import Supervisor
from joulescale_agent.discovery.base import Discovery
from joulescale_agent.engines.scrape import Scraper
from joulescale_agent.exporter import AgentMetrics, Health
from joulescale_agent.gpu.backend import GpuBackend
from joulescale_agent.safety.actuator import ClockActuator
from joulescale_agent.safety.statefile import StateFile

log = logging.getLogger(__name__)


class Agent:
    def __init__(
        self,
        *,
        backend: GpuBackend,
        state: StateFile,
        discovery: Discovery,
        brains: BrainFactory,
        settings: LoopSettings,
        clock: Clock,
        metrics: AgentMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.backend = backend
        self.actuator = ClockActuator(backend, state)
        self.discovery = discovery
        self.metrics = metrics or AgentMetrics()
        self.health = health or Health()
        self._scraper = Scraper(settings.scrape_timeout_s)
        self._brains = brains
        self._settings = settings
        self._clock = clock
        self.supervisor = Supervisor(self._make_loop)

    def _make_loop(self, instance: EngineInstance, policy: InstancePolicy) -> InstanceLoop:
        return InstanceLoop(
            instance,
            policy,
            fetch=self._scraper.fetch,
            actuator=self.actuator,
            brains=self._brains,
            metrics=self.metrics,
            settings=self._settings,
            clock=self._clock,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; every clock this agent locked is reset before returning."""
        self.actuator.recover(d.uuid for d in self.backend.devices())
        watcher = asyncio.create_task(self._follow_discovery(), name="discovery")
        try:
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({watcher, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if watcher.done() and not watcher.cancelled() and watcher.exception() is not None:
                log.error("discovery failed: %s", watcher.exception())
        finally:
            self.health.ready = False
            self.health.detail = "shutting down"
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
            await self.supervisor.stop_all()
            self.actuator.release_all()
            await self._scraper.close()
            log.info("all clocks reset; agent stopped")

    async def _follow_discovery(self) -> None:
        async for desired in self.discovery.updates():
            await self.supervisor.reconcile(desired)
            self.metrics.instances.set(len(self.supervisor.loops))
            self.metrics.read_only.set(1 if self.actuator.read_only else 0)
            if not self.health.ready:
                self.health.ready = True
                self.health.detail = "read-only" if self.actuator.read_only else "ok"
