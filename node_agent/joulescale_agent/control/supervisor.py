"""Keeps one InstanceLoop task per discovered engine instance.

``reconcile`` is called with the whole desired set whenever discovery changes: new instances
start, vanished ones stop (and release their clocks), a changed policy is handed to the running
loop, and a changed instance (other GPUs, other URL) is restarted.

One tenant's spec never stops the others: a policy that cannot be built (bounds no GPU
supports, an unknown profile...) leaves that instance unlocked in state ``policy_error``, logged,
counted and reported once per change, until a new policy arrives. A loop task that crashes has
its GPUs released and is restarted after an exponential back-off (state ``crash_backoff``,
listed in /readyz).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from joulescale_agent.clock import Clock, monotonic
from joulescale_agent.control.instance import EngineInstance, InstancePolicy
from joulescale_agent.control.loop import InstanceLoop
from joulescale_agent.events import CLOCK_POLICY_ERROR, EventRecorder, NullEventRecorder
from joulescale_agent.exporter import INSTANCE_STATES, AgentMetrics, Health

log = logging.getLogger(__name__)

LoopFactory = Callable[[EngineInstance, InstancePolicy], InstanceLoop]
Release = Callable[[Iterable[str]], object]


@dataclass(frozen=True, slots=True)
class RestartBackoff:
    """Delays between restarts of a crashed loop, in seconds."""

    first_s: float = 1.0
    """Delay after the first crash; doubled after each further one."""
    max_s: float = 60.0
    healthy_after_s: float = 120.0
    """A loop that ran this long before crashing starts again from ``first_s``."""

    def delay_s(self, crashes: int) -> float:
        return float(min(self.max_s, self.first_s * 2.0 ** min(max(crashes - 1, 0), 32)))


DEFAULT_BACKOFF = RestartBackoff()


@dataclass(eq=False)
class _Entry:
    instance: EngineInstance
    policy: InstancePolicy
    state: str = "controlled"
    loop: InstanceLoop | None = None
    task: asyncio.Task[None] | None = None
    restart: asyncio.Task[None] | None = None
    error: str = ""
    crashes: int = 0
    started_s: float = 0.0
    stopping: bool = False


class Supervisor:
    def __init__(
        self,
        make_loop: LoopFactory,
        *,
        release: Release | None = None,
        metrics: AgentMetrics | None = None,
        health: Health | None = None,
        events: EventRecorder | None = None,
        backoff: RestartBackoff = DEFAULT_BACKOFF,
        clock: Clock = monotonic,
    ) -> None:
        self._make_loop = make_loop
        self._release = release
        self._metrics = metrics
        self._health = health
        self._events: EventRecorder = events or NullEventRecorder()
        self._backoff = backoff
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    @property
    def loops(self) -> dict[str, InstanceLoop]:
        """The running loops by instance key."""
        return {k: e.loop for k, e in self._entries.items() if e.loop is not None and e.state == "controlled"}

    def states(self) -> dict[str, str]:
        return {key: entry.state for key, entry in self._entries.items()}

    async def reconcile(self, desired: Mapping[str, tuple[EngineInstance, InstancePolicy]]) -> None:
        for key in list(self._entries):
            wanted = desired.get(key)
            if wanted is None or wanted[0] != self._entries[key].instance:
                await self._stop(key)
        for key, (instance, policy) in desired.items():
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(instance, policy)
                self._start(entry)
            elif policy != entry.policy:
                entry.policy = policy
                if entry.state == "controlled" and entry.loop is not None:
                    await self._update(entry)
                elif entry.state == "policy_error":
                    self._start(entry)
                # crash_backoff: the restart picks the newest policy up
        self._publish()

    def _start(self, entry: _Entry) -> None:
        try:
            loop = self._make_loop(entry.instance, entry.policy)
        except Exception as error:  # one tenant's spec is input, never a reason to stop
            self._policy_error(entry, error)
            return
        entry.loop, entry.state, entry.error = loop, "controlled", ""
        entry.started_s = self._clock()
        task = asyncio.create_task(loop.run(), name=f"instance {entry.instance.key}")
        task.add_done_callback(lambda t: self._on_done(entry, t))
        entry.task = task
        log.info(
            "controlling %s (%s, GPUs %s)",
            entry.instance.key,
            entry.instance.role,
            ",".join(entry.instance.gpus),
        )

    async def _update(self, entry: _Entry) -> None:
        assert entry.loop is not None
        try:
            entry.loop.update_policy(entry.policy)
        except Exception as error:
            await self._stop_loop(entry)  # the loop releases its GPUs as it ends
            self._policy_error(entry, error)

    def _policy_error(self, entry: _Entry, error: Exception) -> None:
        entry.state, entry.loop, entry.task = "policy_error", None, None
        entry.error = f"{type(error).__name__}: {error}"[:500]
        log.error("cannot control %s; its GPUs stay at default clocks: %s", entry.instance.key, entry.error)
        if self._metrics is not None:
            self._metrics.policy_errors.labels(*entry.instance.labels).inc()
        self._events.warn(
            entry.instance.pod_ref, CLOCK_POLICY_ERROR, f"GPU clocks left at default: {entry.error}"
        )

    def _on_done(self, entry: _Entry, task: asyncio.Task[None]) -> None:
        if entry.stopping or entry.task is not task or self._entries.get(entry.instance.key) is not entry:
            return
        error = None if task.cancelled() else task.exception()
        why = f"{type(error).__name__}: {error}" if error is not None else "loop ended"
        entry.restart = asyncio.create_task(self._restart_later(entry, why[:500]))

    async def _restart_later(self, entry: _Entry, why: str) -> None:
        key = entry.instance.key
        ran_s = self._clock() - entry.started_s
        entry.crashes = 1 if ran_s >= self._backoff.healthy_after_s else entry.crashes + 1
        delay_s = self._backoff.delay_s(entry.crashes)
        entry.state, entry.loop, entry.task, entry.error = "crash_backoff", None, None, why
        log.error("%s: control loop crashed (%s); GPUs released, restart in %.1f s", key, why, delay_s)
        self._release_gpus(entry)
        self._publish()
        await asyncio.sleep(delay_s)
        if entry.stopping:
            return
        entry.restart = None
        if self._metrics is not None:
            self._metrics.instance_restarts.labels(*entry.instance.labels).inc()
        self._start(entry)
        self._publish()

    def _release_gpus(self, entry: _Entry) -> None:
        if self._release is None:
            return
        try:
            self._release(entry.instance.gpus)
        except Exception:
            log.exception("%s: releasing GPUs failed", entry.instance.key)

    async def _stop_loop(self, entry: _Entry) -> None:
        task, entry.task, entry.loop = entry.task, None, None
        if task is None:
            return
        entry.stopping = True
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s: control loop failed while stopping", entry.instance.key)
        finally:
            entry.stopping = False
        self._release_gpus(entry)  # the loop resets as it ends; this covers a loop that could not

    async def _stop(self, key: str) -> None:
        entry = self._entries.pop(key)
        if entry.restart is not None:
            entry.restart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry.restart
        was_running = entry.task is not None
        await self._stop_loop(entry)
        entry.stopping = True
        if was_running:
            log.info("stopped controlling %s", key)

    async def stop_all(self) -> None:
        for key in list(self._entries):
            try:
                await self._stop(key)
            except Exception:  # never skip the other instances
                log.exception("stopping %s failed", key)
        self._publish()

    def _publish(self) -> None:
        states = self.states()
        if self._metrics is not None:
            for state in INSTANCE_STATES:
                self._metrics.instances_by_state.labels(state).set(
                    sum(1 for s in states.values() if s == state)
                )
            self._metrics.instances.set(len(self.loops))
        if self._health is not None:
            by_state = {
                state: {k: e.error for k, e in self._entries.items() if e.state == state}
                for state in ("crash_backoff", "policy_error")
            }
            self._health.crashing = by_state["crash_backoff"]
            self._health.policy_errors = by_state["policy_error"]
