"""The per-instance control loop: scrape, observe, decide, actuate, read back; fail safe.

One tick = one scrape. The page is read off the event loop within a time budget
(engines.reader); a page that cannot be fetched or read keeps the loop running and is counted;
when no page was readable for ``stale_after_s`` the instance's locks are released and the GPU
returns to its default clocks. A read-back that disagrees with the lock is re-applied
``readback_retries`` times, then the group is released and the mismatch reported.

Releasing is the safe direction and happens at once; locking again after such a release waits
a back-off (``relock_backoff_s``, doubling while releases keep coming), so that no input, not
even pages alternating between good and bad, changes clocks faster than the minimum hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from joulescale.control.clocks import allowed_clocks_mhz
from joulescale.engines.observation import Observation
from joulescale.engines.observe import ObservationBuilder
from joulescale_agent import errors
from joulescale_agent.clock import Clock
from joulescale_agent.control.backoff import RelockBackoff
from joulescale_agent.control.brain import Brain, BrainFactory
from joulescale_agent.control.instance import EngineInstance, InstancePolicy, LoopSettings
from joulescale_agent.engines.adapters import adapter_for
from joulescale_agent.engines.reader import PageReader
from joulescale_agent.exporter import AgentMetrics
from joulescale_agent.gpu.backend import ThrottleReason
from joulescale_agent.safety.actuator import ClockActuator

if TYPE_CHECKING:
    from joulescale_agent.control.hookfeed import HookFeed

log = logging.getLogger(__name__)

ERROR_LOG_EVERY_S = 10.0
"""A streak of metrics errors that differ from tick to tick logs one line per this period."""

Fetch = Callable[[str], Awaitable[str | bytes]]
# Throttling explains a read-back below the lock: the GPU may run slower, never faster.
_EXPLAINS_LOWER = (
    ThrottleReason.SW_POWER_CAP
    | ThrottleReason.HW_SLOWDOWN
    | ThrottleReason.SW_THERMAL
    | ThrottleReason.HW_THERMAL
    | ThrottleReason.HW_POWER_BRAKE
)


class InstanceLoop:
    def __init__(
        self,
        instance: EngineInstance,
        policy: InstancePolicy,
        *,
        fetch: Fetch,
        actuator: ClockActuator,
        brains: BrainFactory,
        metrics: AgentMetrics,
        settings: LoopSettings,
        clock: Clock,
    ) -> None:
        self.instance = instance
        self._fetch = fetch
        self._actuator = actuator
        self._brains = brains
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._reader = PageReader(adapter_for(instance.engine), budget_s=settings.parse_budget_s, clock=clock)
        self._builder = ObservationBuilder(instance.role)
        self._supported = actuator.supported(instance.gpus[0])
        self.policy = policy
        self._brain: Brain | None = brains.build(instance, policy, self._supported)
        self.locked_mhz: int | None = None
        self.failsafe = False
        self._last_ok_s = clock()
        self._readback_due_s: float | None = None
        self._telemetry_due_s = 0.0
        self._readback_tries = 0
        self._backoff = RelockBackoff(settings.relock_backoff_s, settings.relock_backoff_max_s)
        self._backoff_shown = False
        self.last_error: str | None = None
        self._error_log_due_s = 0.0
        self._errors_unlogged = 0
        self._kv_capacity: int | None = None
        """The engine's KV cache size in tokens, from its page (the hook does not publish it)."""
        self.hook: HookFeed | None = None
        if settings.hook_dir and instance.uid:
            from joulescale_agent.control.hookfeed import HookFeed  # the hook's package only with --hook-dir

            self.hook = HookFeed(instance, settings.hook_dir, self._builder, metrics, clock, self._decide_rich,
                                 settings.hook_stale_after_s)
        else:
            metrics.view.labels(*instance.labels, "metrics").set(1)
            metrics.view.labels(*instance.labels, "rich").set(0)

    def update_policy(self, policy: InstancePolicy) -> None:
        """A new plan or SLO: rebuild the brain, keep the loop (no restart, no reset)."""
        if policy == self.policy:
            return
        log.info("%s: policy changed to %s", self.instance.key, policy)
        self.policy = policy
        self._brain = self._brains.build(self.instance, policy, self._supported)
        if self._brain is None:
            self.release()

    def release(self) -> None:
        self._actuator.release(self.instance.gpus)
        if self._brain is not None:
            self._brain.reset()
        self.locked_mhz = None
        self._readback_due_s = None
        for gpu in self.instance.gpus:
            self._metrics.target_clock.labels(gpu, *self.instance.labels).set(0)

    def _fail_safe_release(self, now_s: float) -> None:
        """Release now and, if a clock was locked, start the re-lock back-off (control.backoff)."""
        if self.locked_mhz is not None:  # when nothing was locked, nothing changes, nothing flaps
            backoff_s = self._backoff.released(now_s)
            self._metrics.relock_backoff.labels(*self.instance.labels).set(backoff_s)
            self._backoff_shown = True
        self.release()

    def _backing_off(self, now_s: float) -> bool:
        """True while a lock must wait for the back-off after a fail-safe release."""
        if self.locked_mhz is not None:
            return False
        if self._backoff.holds(now_s):
            return True
        if self._backoff_shown:
            self._backoff_shown = False
            self._metrics.relock_backoff.labels(*self.instance.labels).set(0)
        return False

    async def run(self) -> None:
        period_s = self._settings.period_s
        next_s = self._clock()
        if self.hook is not None:
            self.hook.open()
        try:
            while True:
                await self.step()
                next_s += period_s
                delay_s = next_s - self._clock()
                if delay_s < 0:  # fell behind: skip the missed ticks instead of bursting
                    next_s = self._clock()
                    delay_s = 0.0
                await asyncio.sleep(delay_s)
        finally:
            if self.hook is not None:
                self.hook.close()
            for view in ("metrics", "rich"):  # the instance is gone: so are its series
                with contextlib.suppress(KeyError):
                    self._metrics.view.remove(*self.instance.labels, view)
            self.release()

    async def step(self) -> None:
        """One tick; whatever goes wrong releases the locks (with the back-off) and the loop goes on."""
        try:
            await self.tick()
        except errors.GpuError as error:
            log.error("%s: GPU error, releasing locks: %s", self.instance.key, error)
            self._fail_safe_release(self._clock())
        except Exception:
            # A bug in a policy must not leave a clock locked, nor stop the node's loop.
            log.exception("%s: unexpected error; releasing locks", self.instance.key)
            self._fail_safe_release(self._clock())

    async def tick(self) -> None:
        started_s = self._clock()
        if self._brain is None:
            return
        try:
            page = await self._fetch(self.instance.metrics_url)
            read = await self._reader.read_off_loop(page)
        except errors.MetricsError as error:
            self._on_metrics_error(error, started_s)
            return
        labels = self.instance.labels
        self._metrics.parse_time.labels(*labels).observe(read.parse_s)
        if read.skipped_lines:
            self._metrics.lines_skipped.labels(*labels).inc(read.skipped_lines)
        sample = read.sample
        now_s = self._clock()
        if self.failsafe:
            log.info("%s: metrics are back; leaving fail-safe", self.instance.key)
            self.failsafe = False
            self._metrics.failsafe.labels(*self.instance.labels).set(0)
        self._last_ok_s = now_s
        self.last_error = None
        applied_mhz = self.locked_mhz if self.locked_mhz is not None else self._supported[-1]
        observation = self._builder.build(sample, now_s, applied_mhz)
        self._kv_capacity = sample.kv_capacity_tokens
        if self.hook is not None and not self.hook.tick_decides(observation, now_s):
            self._after_change(now_s)  # the rich view decides on the hook's messages
            return
        self._decide_and_apply(observation, now_s)
        self._after_change(now_s)

    def _decide_rich(self, now_s: float, published_s: float | None) -> None:
        """The engine hook scheduled a step (or went idle): decide on its messages, as ``step``
        does on a scrape, and with the same fail-safes."""
        try:
            if self._brain is None or self.failsafe:
                return
            applied_mhz = self.locked_mhz if self.locked_mhz is not None else self._supported[-1]
            log.debug("%s: observed the hook at %r", self.instance.key, now_s)
            observation = self._builder.build_rich(now_s, applied_mhz, self._kv_capacity, published_s)
            self._decide_and_apply(observation, now_s)
        except errors.GpuError as error:
            log.error("%s: GPU error, releasing locks: %s", self.instance.key, error)
            self._fail_safe_release(self._clock())
        except Exception:
            log.exception("%s: unexpected error; releasing locks", self.instance.key)
            self._fail_safe_release(self._clock())

    def _decide_and_apply(self, observation: Observation, now_s: float) -> None:
        assert self._brain is not None
        reason, target_mhz = self._brain.decide(observation)
        self._metrics.decisions.labels(*self.instance.labels, reason.value).inc()
        backing_off = self._backing_off(now_s)
        if target_mhz is not None and not backing_off:
            self._apply(target_mhz, now_s)
        self._metrics.decision_time.labels(*self.instance.labels).observe(self._clock() - now_s)

    def _apply(self, target_mhz: int, now_s: float) -> None:
        if target_mhz == self.locked_mhz:
            return
        try:
            allowed = allowed_clocks_mhz(self._supported, self.policy.bounds)
        except ValueError as error:
            log.error("%s: %s; leaving clocks at default", self.instance.key, error)
            return
        if not self._actuator.lock(self.instance.gpus, target_mhz, allowed):
            self._metrics.read_only.set(1 if self._actuator.read_only else 0)
            return
        self.locked_mhz = target_mhz
        self._readback_due_s = now_s + self._settings.readback_after_s
        self._metrics.clock_changes.labels(*self.instance.labels).inc()
        for gpu in self.instance.gpus:
            self._metrics.target_clock.labels(gpu, *self.instance.labels).set(target_mhz)

    def _after_change(self, now_s: float) -> None:
        """Read the clock back once it should have settled, and refresh power and energy."""
        due = self._readback_due_s
        telemetry = now_s >= self._telemetry_due_s
        if not telemetry and (due is None or now_s < due):
            return
        checking = due is not None and now_s >= due and self.locked_mhz is not None
        mismatched: list[str] = []
        for gpu in self.instance.gpus:
            labels = (gpu, *self.instance.labels)
            try:
                back = self._actuator.read_back(gpu)
                if telemetry:
                    self._metrics.power.labels(*labels).set(self._actuator.backend.power_watts(gpu))
                    self._metrics.set_energy(labels, self._actuator.backend.energy_mj(gpu) / 1000.0)
            except errors.GpuError as error:
                log.warning("%s: read-back of %s failed: %s", self.instance.key, gpu, error)
                continue
            self._metrics.actual_clock.labels(*labels).set(back.sm_clock_mhz)
            self._metrics.throttle.labels(*labels).set(int(back.throttle))
            if checking and self.locked_mhz is not None:
                explained = back.sm_clock_mhz < self.locked_mhz and back.throttle & _EXPLAINS_LOWER
                if back.sm_clock_mhz != self.locked_mhz and not explained:
                    self._metrics.readback_mismatches.labels(*labels).inc()
                    mismatched.append(f"{gpu} reads {back.sm_clock_mhz} MHz")
        if telemetry:
            self._telemetry_due_s = now_s + self._settings.telemetry_every_s
        if due is not None and now_s >= due:
            self._readback_due_s = None
        if checking:
            self._on_readback(mismatched, now_s)

    def _on_readback(self, mismatched: list[str], now_s: float) -> None:
        """A clean read-back ends the retries; a mismatch re-applies the lock after the settle
        time, up to ``readback_retries`` times, then releases the group and reports it once."""
        if not mismatched:
            self._readback_tries = 0
            return
        locked_mhz = self.locked_mhz
        assert locked_mhz is not None
        if self._readback_tries < self._settings.readback_retries:
            self._readback_tries += 1
            log.debug(
                "%s: %s, locked %d MHz; re-applying", self.instance.key, ", ".join(mismatched), locked_mhz
            )
            try:
                allowed = allowed_clocks_mhz(self._supported, self.policy.bounds)
            except ValueError:
                allowed = ()
            if locked_mhz in allowed:  # the bounds may have changed since the lock
                if self._actuator.lock(self.instance.gpus, locked_mhz, allowed):
                    self._readback_due_s = now_s + self._settings.readback_after_s
                return
        log.error(
            "%s: %s after %d re-applies of %d MHz; releasing the group's clocks",
            self.instance.key,
            ", ".join(mismatched),
            self._readback_tries,
            locked_mhz,
        )
        self._readback_tries = 0
        self._metrics.readback_releases.labels(*self.instance.labels).inc()
        self._fail_safe_release(now_s)

    def _on_metrics_error(self, error: errors.MetricsError, now_s: float) -> None:
        if isinstance(error, errors.MetricsUnavailableError):
            kind = "unavailable"
        else:
            kind = "limit" if isinstance(error, errors.MetricsLimitError) else "format"
        self._metrics.scrape_errors.labels(*self.instance.labels, kind).inc()
        message = str(error)
        if message != self.last_error and (self.last_error is None or now_s >= self._error_log_due_s):
            more = f" ({self._errors_unlogged} more not logged)" if self._errors_unlogged else ""
            log.warning("%s: %s%s", self.instance.key, message, more)
            self._error_log_due_s = now_s + ERROR_LOG_EVERY_S
            self._errors_unlogged = 0
        else:
            self._errors_unlogged += 1
        self.last_error = message
        if not self.failsafe and now_s - self._last_ok_s >= self._settings.stale_after_s:
            log.error(
                "%s: no fresh metrics for %.1f s; releasing clock locks",
                self.instance.key,
                now_s - self._last_ok_s,
            )
            self.failsafe = True
            self._metrics.failsafe.labels(*self.instance.labels).set(1)
            self._builder.reset()
            self._fail_safe_release(now_s)
