"""The simulated engine's engine hook: the core's hook messages, sent through the real publisher.

The messages are made from the core engine model by ``joulescale.engines.hook_publish`` (the
same the twin's rich view is built from) and go out in the hook's wire schema over its socket
(``joulescale_hook``), as a hooked vLLM's scheduler sends them.
"""

from __future__ import annotations

import logging

from joulescale.engines.hook import HookSchedule, HookStepDone
from joulescale_hook.schema import Engine, StepDone, StepScheduled
from joulescale_hook.transport import HookPublisher


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def to_wire(message: HookSchedule | HookStepDone) -> StepScheduled | StepDone:
    """The wire form of a core message (times in monotonic ns, as the hook publishes them)."""
    if isinstance(message, HookStepDone):
        return StepDone(Engine.SIMULATED, message.step_id, _ns(message.at_s), _ns(message.duration_s))
    m = message
    return StepScheduled(
        engine=Engine.SIMULATED, step_id=m.step_id, t_ns=_ns(m.at_s),
        prefill_requests=m.prefill_requests, prefill_tokens=m.prefill_tokens,
        decode_requests=m.decode_requests, decode_kv_tokens=m.decode_kv_tokens, waiting_requests=m.waiting_requests,
        prefill_prompt_tokens=[r.prompt_tokens for r in m.prefill],
        prefill_done_tokens=[r.computed_tokens for r in m.prefill],
        prefill_step_tokens=[r.scheduled_tokens for r in m.prefill],
        prefill_arrival_ns=[_ns(r.arrival_s) for r in m.prefill],
        decode_kv=[r.kv_tokens for r in m.decode], decode_output_tokens=[r.output_tokens for r in m.decode],
        waiting_prompt_tokens=[w.prompt_tokens for w in m.waiting],
        waiting_arrival_ns=[_ns(w.arrival_s) for w in m.waiting],
    )


class WireHook:
    """A ``HookSink`` that publishes to the agent's socket at ``path`` (never blocks, never raises)."""

    def __init__(self, path: str) -> None:
        self.publisher = HookPublisher(path)

    def hook_schedule(self, message: HookSchedule) -> None:
        self.publisher.publish(to_wire(message))

    def hook_step_done(self, message: HookStepDone) -> None:
        self.publisher.publish(to_wire(message))

    def close(self) -> None:
        self.publisher.close()
        stats = self.publisher.stats()
        logging.info("engine hook: %d published, %d sent, %d dropped", stats.published, stats.sent, stats.dropped)
