"""The agent process's lifecycle: recover leftovers, follow discovery, shut down clean.

Whatever ends the run (a signal, discovery failing, a bug), every clock is reset before
``run`` returns; a failure on the way (a loop that will not stop, a state file that cannot be
written) never skips the resets that follow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from joulescale_agent.clock import Clock
from joulescale_agent.control.brain import BrainFactory
from joulescale_agent.control.instance import EngineInstance, InstancePolicy, LoopSettings
from joulescale_agent.control.loop import InstanceLoop
from joulescale_agent.control.supervisor import DEFAULT_BACKOFF, RestartBackoff, Supervisor
from joulescale_agent.discovery.base import Discovery
from joulescale_agent.engines.scrape import Scraper
from joulescale_agent.events import EventRecorder
from joulescale_agent.exporter import AgentMetrics, Health
from joulescale_agent.gpu.backend import GpuBackend
from joulescale_agent.safety.actuator import ClockActuator
from joulescale_agent.safety.statefile import StateFile

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_DISCOVERY_FAILED = 1
"""Also when some clock could not be reset: the state file names it for the next agent."""


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
        events: EventRecorder | None = None,
        backoff: RestartBackoff = DEFAULT_BACKOFF,
    ) -> None:
        self.backend = backend
        self.metrics = metrics or AgentMetrics()
        self.health = health or Health()
        self.actuator = ClockActuator(backend, state, self.metrics)
        self.metrics.watch_state_file(lambda: state.write_failures, lambda: state.write_error is None)
        self.discovery = discovery
        self._scraper = Scraper(settings.scrape_timeout_s)
        self._brains = brains
        self._settings = settings
        self._clock = clock
        self.supervisor = Supervisor(
            self._make_loop,
            release=self.actuator.release,
            metrics=self.metrics,
            health=self.health,
            events=events,
            backoff=backoff,
            clock=clock,
        )

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

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set (EXIT_OK) or discovery fails (EXIT_DISCOVERY_FAILED).

        Every clock this agent locked is reset before returning; one that cannot be also makes
        the status EXIT_DISCOVERY_FAILED, so that the failure shows.
        """
        status = EXIT_OK
        try:
            self._recover()
            watcher = asyncio.create_task(self._follow_discovery(), name="discovery")
            try:
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait({watcher, stopped}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if watcher.done():
                    error = None if watcher.cancelled() else watcher.exception()
                    log.error("discovery failed: %s; resetting clocks and exiting", error or "it ended")
                    status = EXIT_DISCOVERY_FAILED
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watcher
        finally:
            still_locked = await self._shut_down()
        return EXIT_DISCOVERY_FAILED if still_locked else status

    def _recover(self) -> None:
        try:
            candidates = [d.uuid for d in self.backend.devices()]
        except Exception:
            log.exception("cannot list GPUs; resetting only those the state file names")
            candidates = []
        self.actuator.recover(candidates)

    async def _shut_down(self) -> list[str]:
        """Stop the loops and reset every clock; returns the GPUs still locked."""
        self.health.ready = False
        self.health.detail = "shutting down"
        try:
            await self.supervisor.stop_all()
        except Exception:
            log.exception("stopping the control loops failed")
        finally:
            failed = self.actuator.release_all()
            try:
                await self._scraper.close()
            except Exception:
                log.exception("closing the scraper failed")
        if failed:
            log.error(
                "agent stopped; clocks still locked (recorded for the next agent): %s", ", ".join(failed)
            )
        else:
            log.info("all clocks reset; agent stopped")
        return failed

    async def _follow_discovery(self) -> None:
        async for desired in self.discovery.updates():
            await self.supervisor.reconcile(desired)
            self.metrics.read_only.set(1 if self.actuator.read_only else 0)
            self.health.ready = True
            self.health.detail = self._detail()

    def _detail(self) -> str:
        if self.actuator.no_permission:
            return "read-only"
        gpus = sorted(self.actuator.read_only_gpus)
        return f"ok; read-only GPUs: {', '.join(gpus)}" if gpus else "ok"
