"""One instance's engine hook: its socket, the view its policy runs in, and when the hook decides.

The agent binds one datagram socket per pod, ``<hook dir>/<pod uid>/hook.sock`` (the path is the
pod's identity: discovery knows the UID and the pod's GPUs, so what arrives there can only steer
that pod's GPUs; the engine container mounts only its own ``<pod uid>`` directory). Every datagram is read off the socket without blocking, checked
(``engines.hook_wire``) and fed to the instance's one ``ObservationBuilder``.

Views. An instance starts in the metrics view and enters the rich view with the first valid
scheduling message. In the rich view the policy decides on each scheduling message (as the twin
does at each scheduling call) and once ``IDLE_AFTER_S`` after a step's end that no scheduling
followed (the engine went idle); the 20 Hz scrape goes on (the metrics view stays warm) but does
not decide. The instance falls back to the metrics view when the hook has been silent for
``stale_after_s`` while the page shows the engine working (an idle engine's hook is silent by
design). ``joulescale_agent_view`` and one log line say which view each instance runs in.

A tenant's engine writes this socket: each wake-up reads at most ``DRAIN_MAX`` datagrams, the
decoder bounds every value, an invalid datagram is counted and skipped (its first of a streak
logged), and hook decisions are at least ``MIN_DECISION_GAP_S`` apart, so no writer can make the
agent spend more than a bounded share of its loop on one instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Literal

from joulescale.engines.hook import IDLE_AFTER_S, HookSchedule, HookStepDone
from joulescale.engines.observation import Observation
from joulescale.engines.observe import ObservationBuilder
from joulescale_agent.clock import Clock
from joulescale_agent.control.instance import EngineInstance
from joulescale_agent.engines.hook_wire import read_datagram
from joulescale_agent.errors import HookMessageError
from joulescale_agent.exporter import AgentMetrics
from joulescale_hook.schema import MAX_DATAGRAM
from joulescale_hook.transport import HookReceiver, socket_path

log = logging.getLogger(__name__)

View = Literal["metrics", "rich"]
DRAIN_MAX = 64
MIN_DECISION_GAP_S = 0.002
INVALID_LOG_EVERY_S = 10.0

Decide = Callable[[float, float | None], None]
"""The loop's rich decision: (now_s, when the latest schedule was received)."""


class HookFeed:
    def __init__(self, instance: EngineInstance, hook_dir: str, builder: ObservationBuilder, metrics: AgentMetrics,
                 clock: Clock, decide: Decide, stale_after_s: float) -> None:
        self.instance = instance
        self.path = socket_path(hook_dir, instance.uid)
        self._builder = builder
        self._metrics = metrics
        self._clock = clock
        self._decide = decide
        self._stale_after_s = stale_after_s
        self._receiver: HookReceiver | None = None
        self.view: View = "metrics"
        self.last_message_s: float | None = None
        self._received_s: float | None = None
        self._last_decision_s = float("-inf")
        self._pending: asyncio.TimerHandle | None = None
        self._invalid_log_due_s = 0.0
        self._source: int | None = None
        self._show_view()

    def open(self) -> bool:
        """Bind the pod's socket and read it from the running event loop; False (logged) when the
        socket cannot be bound: the instance then stays in the metrics view."""
        try:
            receiver = HookReceiver(self.path)
        except OSError as error:
            log.warning("%s: engine hook socket %s unavailable (%s); metrics view", self.instance.key, self.path,
                        error)
            return False
        self._receiver = receiver
        asyncio.get_running_loop().add_reader(receiver.fileno(), self._readable)
        return True

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(receiver.fileno())
            with contextlib.suppress(OSError):
                receiver.close()

    # --- reading ---------------------------------------------------------------------------
    def _readable(self) -> None:
        receiver = self._receiver
        if receiver is None:
            return
        scheduled = False
        done_step: int | None = None
        for _ in range(DRAIN_MAX):
            try:
                data = receiver.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                log.warning("%s: engine hook socket failed: %s", self.instance.key, error)
                break
            try:
                source, message = read_datagram(data)
            except HookMessageError as error:
                self._invalid(str(error))
                continue
            if self._source is None:
                self._source = source
            elif source != self._source:
                # Another scheduler of the pod (a data-parallel rank) counts its own steps; the
                # builder follows one: the first heard, until the hook falls silent.
                self._metrics.hook_messages.labels(*self.instance.labels, "other_source").inc()
                continue
            now_s = self._clock()
            self.last_message_s = now_s
            if isinstance(message, HookSchedule):
                self._metrics.hook_messages.labels(*self.instance.labels, "scheduled").inc()
                self._builder.hook_schedule(message)
                self._received_s = now_s
                scheduled = True
            else:
                self._metrics.hook_messages.labels(*self.instance.labels, "done").inc()
                self.on_step_done(message)
                done_step = message.step_id
        if scheduled:
            if self.view != "rich":
                self._switch("rich", "the engine hook speaks")
            self._decide_soon()
        elif done_step is not None and self.view == "rich":
            latest = self._builder.hook_latest
            asyncio.get_running_loop().call_later(IDLE_AFTER_S, self._idle_check,
                                                  latest.step_id if latest is not None else None)

    def on_step_done(self, message: HookStepDone) -> None:
        self._builder.hook_step_done(message)

    def _invalid(self, reason: str) -> None:
        self._metrics.hook_messages.labels(*self.instance.labels, "invalid").inc()
        now_s = self._clock()
        if now_s >= self._invalid_log_due_s:
            log.warning("%s: invalid engine hook datagram: %s", self.instance.key, reason[:200])
            self._invalid_log_due_s = now_s + INVALID_LOG_EVERY_S

    # --- deciding --------------------------------------------------------------------------
    def _idle_check(self, step_id: int | None) -> None:
        """A step ended and nothing was scheduled since: the engine is idle; decide on that."""
        latest = self._builder.hook_latest
        if self.view == "rich" and (latest.step_id if latest is not None else None) == step_id:
            self._decide_soon()

    def _decide_soon(self) -> None:
        now_s = self._clock()
        wait_s = self._last_decision_s + MIN_DECISION_GAP_S - now_s
        if wait_s <= 0:
            self._decide_now()
        elif self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(wait_s, self._decide_now)

    def _decide_now(self) -> None:
        self._pending = None
        if self.view != "rich":
            return
        now_s = self._clock()
        self._last_decision_s = now_s
        self._decide(now_s, self._received_s)

    # --- the scrape's part -----------------------------------------------------------------
    def tick_decides(self, observation: Observation, now_s: float) -> bool:
        """Called with each scrape's observation: True when the scrape decides (metrics view).
        Falls back to the metrics view when the hook is silent while the page shows work."""
        if self.view == "metrics":
            return True
        silent_s = now_s - self.last_message_s if self.last_message_s is not None else float("inf")
        working = observation.running_requests > 0 or observation.waiting_requests > 0 or observation.iterations_delta > 0
        if silent_s >= self._stale_after_s and working:
            self._switch("metrics", f"the engine hook was silent for {silent_s:.2f} s while the engine worked")
            self._builder.reset_hook()
            self._source = None
            return True
        return False

    def _switch(self, view: View, why: str) -> None:
        log.info("%s: %s view (%s)", self.instance.key, view, why)
        self.view = view
        self._show_view()

    def _show_view(self) -> None:
        labels = self.instance.labels
        self._metrics.view.labels(*labels, "metrics").set(1 if self.view == "metrics" else 0)
        self._metrics.view.labels(*labels, "rich").set(1 if self.view == "rich" else 0)
