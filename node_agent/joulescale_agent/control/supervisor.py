"""Keeps one InstanceLoop task per discovered engine instance.

``reconcile`` is called with the whole desired set whenever discovery changes: new instances
start, vanished ones stop (and release their clocks), a changed policy is handed to the running
loop, and a changed instance (other GPUs, other URL) is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from joulescale_agent import errors
from joulescale_agent.control.instance import EngineInstance, InstancePolicy
from joulescale_agent.control.loop import InstanceLoop

log = logging.getLogger(__name__)

LoopFactory = Callable[[EngineInstance, InstancePolicy], InstanceLoop]


class Supervisor:
    def __init__(self, make_loop: LoopFactory) -> None:
        self._make_loop = make_loop
        self.loops: dict[str, InstanceLoop] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def reconcile(self, desired: Mapping[str, tuple[EngineInstance, InstancePolicy]]) -> None:
        for key in list(self.loops):
            loop = self.loops[key]
            wanted = desired.get(key)
            if wanted is None or wanted[0] != loop.instance:
                await self._stop(key)
        for key, (instance, policy) in desired.items():
            if key in self.loops:
                self.loops[key].update_policy(policy)
                continue
            try:
                loop = self._make_loop(instance, policy)
            except (errors.AgentError, ValueError) as error:
                log.error("cannot control %s: %s", key, error)
                continue
            self.loops[key] = loop
            self._tasks[key] = asyncio.create_task(loop.run(), name=f"instance {key}")
            log.info("controlling %s (%s, GPUs %s)", key, instance.role, ",".join(instance.gpus))

    async def _stop(self, key: str) -> None:
        task = self._tasks.pop(key)
        self.loops.pop(key)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("stopped controlling %s", key)

    async def stop_all(self) -> None:
        for key in list(self.loops):
            await self._stop(key)
