"""Engine samples and hook messages -> Observations, for the agent and the twin alike.

The metrics-only view comes from successive ``/metrics`` samples (``build``): where the engine
lacks a signal a policy uses, the builder fills it from what the engine does publish
(``substitutes``); what no engine offers stays ``None`` (``last_iteration_s``). The rich view
comes from the engine hook's messages (``hook_schedule``, ``hook_step_done``, ``build_rich``) and
holds nothing those messages do not carry.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from joulescale.engines.histogram import Histogram
from joulescale.engines.hook import HookSchedule, HookStepDone, HookTally, ScheduledPrefill
from joulescale.engines.observation import DecodeProgress, Observation, Phase, QueuedPrompt
from joulescale.engines.sample import EngineSample
from joulescale.engines.substitutes import decode_steps, longest_wait_cap_s, longest_wait_s, prefill_step_s


def _delta(now: float | None, before: float | None) -> int:
    """Counter increment; a reset (engine restart) counts from zero instead of going negative."""
    if now is None:
        return 0
    if before is None or now < before:
        return 0 if before is None else int(now)
    return round(now - before)


def _fraction(value: float | None) -> float:
    """A usage in 0..1; absent, NaN or negative reads as 0 (the adapter refuses those anyway)."""
    return min(value, 1.0) if value is not None and value >= 0.0 else 0.0


def _hist_delta(now: Histogram | None, before: Histogram | None) -> Histogram | None:
    if now is None or before is None:
        return None
    return now.minus(before)


@dataclass(slots=True)
class _Previous:
    sample: EngineSample
    at_s: float


def _new_in(ahead: HookSchedule, running: tuple[ScheduledPrefill, ...]) -> tuple[ScheduledPrefill, ...]:
    """The prompts of a step decided ahead that do not continue a chunk of the running step (one
    does when its prompt, arrival and computed tokens follow a running entry's)."""
    continuing = {(r.prompt_tokens, r.arrival_s, r.computed_tokens + r.scheduled_tokens)
                  for r in running if not r.completes}
    return tuple(r for r in ahead.prefill if (r.prompt_tokens, r.arrival_s, r.computed_tokens) not in continuing)


class ObservationBuilder:
    """Keeps the previous sample of one engine instance so that counters become deltas."""

    def __init__(self, phase: Phase, colocated: bool = False) -> None:
        """``colocated``: the page is an aggregated instance's, whose steps run both phases. Its
        prefill view is then the page read as a P/D prefill instance's would be: vLLM's running
        gauge counts every sequence and its cache holds the decodes' contexts, and the page
        cannot tell which running request is still in prefill, so the prompts are the waiting
        ones (a running prompt's chunks end within a few steps). No batch is in flight, except
        while prompts wait: the engine admits them at step boundaries, so they wait behind the
        step in flight, counted as one prompt (its chunk unseen); one generated token per first
        token, so prompt tokens per request stay the prompts' length."""
        self.phase = phase
        self.colocated = colocated
        self._previous: _Previous | None = None
        self._hook = HookTally()
        self._rich_at_s: float | None = None

    def reset(self) -> None:
        """Forget the baseline (after a gap in scraping, deltas would span the gap)."""
        self._previous = None

    def reset_hook(self) -> None:
        """Forget the hook's messages (the hook fell silent; its next message starts afresh)."""
        self._hook = HookTally()
        self._rich_at_s = None

    # --- the rich view: the engine hook's messages ---------------------------------------------
    def hook_schedule(self, message: HookSchedule) -> None:
        self._hook.schedule(message)

    def hook_step_done(self, message: HookStepDone) -> None:
        self._hook.step_done(message)

    @property
    def hook_latest(self) -> HookSchedule | None:
        return self._hook.latest

    def build_rich(self, now_s: float, sm_clock_mhz: int, kv_capacity_tokens: int | None,
                   published_s: float | None = None) -> Observation:
        """The rich view at ``now_s`` from the hook's messages so far: the step in flight as its
        scheduling call published it (none once that step ended), the step decided after it where
        the engine schedules ahead, the queue the latest call left, and the steps that ended since
        the previous observation. ``published_s``: when the latest schedule was published, on
        ``now_s``'s clock (default ``now_s``); ages come from the message's own clock.
        ``kv_capacity_tokens`` is the instance's, not the hook's."""
        tally = self._hook
        prompt, generated, steps, mean_s, last_s = tally.take()
        step = tally.in_flight
        ahead = tally.next_step
        latest = tally.latest
        shift = 0.0
        if latest is not None:
            shift = (now_s if published_s is None else published_s) - latest.at_s

        def arrived(arrival_s: float) -> float:
            return min(arrival_s, latest.at_s if latest is not None else arrival_s) + shift

        told = ahead if ahead is not None else step  # the latest word on the queue
        waiting = told.waiting if told is not None else ()
        capacity = kv_capacity_tokens if kv_capacity_tokens and kv_capacity_tokens > 0 else None
        interval = now_s - self._rich_at_s if self._rich_at_s is not None else 0.0
        self._rich_at_s = now_s
        queue: tuple[QueuedPrompt, ...] | None = None
        decoding: tuple[DecodeProgress, ...] | None = None
        waiting_requests = told.waiting_requests if told is not None else 0
        if step is None:
            running = tokens = 0
        elif self.phase == "prefill":
            running, tokens = step.prefill_requests, step.prefill_tokens
        else:
            running, tokens = step.decode_requests, step.decode_kv_tokens
        if self.phase == "prefill":
            in_flight = step.prefill if step is not None else ()
            decided = _new_in(ahead, in_flight) if ahead is not None else ()
            # A prompt decided for the next step waits for it: it counts as waiting, in the
            # queue after the running step's.
            if ahead is not None:
                waiting_requests += ahead.prefill_requests - (len(ahead.prefill) - len(decided))
            queue = (*(QueuedPrompt(r.prompt_tokens, arrived(r.arrival_s)) for r in in_flight),
                     *(QueuedPrompt(r.prompt_tokens, arrived(r.arrival_s)) for r in decided),
                     *(QueuedPrompt(w.prompt_tokens, arrived(w.arrival_s)) for w in waiting))
            oldest = max((now_s - q.arrival_s for q in queue), default=None)
        else:
            oldest = max((now_s - arrived(w.arrival_s) for w in waiting), default=None)
            decoding = tuple(DecodeProgress(r.output_tokens, now_s - arrived(self._decode_start_s(r.output_tokens)),
                                            r.kv_tokens)
                             for r in (step.decode if step is not None else ()))
        return Observation(
            phase=self.phase, now_s=now_s, sm_clock_mhz=sm_clock_mhz,
            running_requests=running, waiting_requests=waiting_requests,
            kv_cache_usage=min(1.0, tokens / capacity) if capacity else 0.0,
            context_tokens=tokens,
            prompt_tokens_delta=prompt, generation_tokens_delta=generated, iterations_delta=steps,
            interval_s=interval, last_iteration_s=last_s, mean_iteration_s=mean_s if steps else None,
            oldest_wait_s=oldest, queue=queue, decoding=decoding,
        )

    def _decode_start_s(self, output_tokens: int) -> float:
        """When a decode request began (``HookTally.decode_started_s``; with a single step known,
        that step: a lower bound of its decode time)."""
        started = self._hook.decode_started_s(output_tokens)
        if started is None:
            latest = self._hook.latest
            started = latest.at_s if latest is not None else 0.0
        return started

    # --- the metrics-only view: /metrics samples -------------------------------------------------

    def build(self, sample: EngineSample, now_s: float, sm_clock_mhz: int) -> Observation:
        prev = self._previous
        before = prev.sample if prev is not None else None
        itl = _hist_delta(sample.inter_token_latency, before.inter_token_latency if before else None)
        queue = _hist_delta(sample.queue_time, before.queue_time if before else None)
        kv_usage = _fraction(sample.kv_cache_usage)
        context_tokens = int(kv_usage * sample.kv_capacity_tokens) if sample.kv_capacity_tokens else 0
        running = max(sample.running_requests, 0)
        recorded_wait_s = longest_wait_s(queue)
        observation = Observation(
            phase=self.phase,
            now_s=now_s,
            sm_clock_mhz=sm_clock_mhz,
            running_requests=running,
            waiting_requests=max(sample.waiting_requests, 0),
            kv_cache_usage=kv_usage,
            context_tokens=context_tokens,
            prompt_tokens_delta=_delta(
                sample.prompt_tokens_total, before.prompt_tokens_total if before else None
            ),
            generation_tokens_delta=_delta(
                sample.generation_tokens_total, before.generation_tokens_total if before else None
            ),
            iterations_delta=self._iterations(sample, before, itl),
            preemptions_delta=_delta(sample.preemptions_total, before.preemptions_total if before else None),
            interval_s=now_s - prev.at_s if prev is not None else 0.0,
            mean_iteration_s=self._mean_iteration_s(sample, before, itl, queue),
            oldest_wait_s=recorded_wait_s if sample.waiting_requests > 0 else None,
            recorded_wait_s=recorded_wait_s,
            recorded_wait_cap_s=longest_wait_cap_s(queue),
        )
        self._previous = _Previous(sample, now_s)
        if self.colocated and self.phase == "prefill":
            first = _hist_delta(sample.ttft, before.ttft if before else None)
            first_tokens = round(first.count) if first is not None else 0
            observation = replace(observation, running_requests=1 if observation.waiting_requests else 0,
                                  context_tokens=0, kv_cache_usage=0.0,
                                  generation_tokens_delta=first_tokens, colocated=True)
        return observation

    def _iterations(self, sample: EngineSample, before: EngineSample | None, itl: Histogram | None) -> int:
        """Steps run: vLLM's iteration-tokens count; on a decode instance of an engine without
        it (SGLang), the inter-token latency count per running request."""
        if before is None:
            return 0
        if sample.iteration_tokens is not None:
            return _delta(sample.iterations_total, before.iterations_total)
        if self.phase == "decode" and itl is not None:
            return decode_steps(itl.count, max(before.running_requests, 0), max(sample.running_requests, 0))
        return 0

    def _mean_iteration_s(
        self, sample: EngineSample, before: EngineSample | None, itl: Histogram | None, queue: Histogram | None
    ) -> float | None:
        """Decode: the inter-token latency's mean; prefill: the requests' mean prefill time."""
        if self.phase == "decode":
            return itl.mean if itl is not None else None
        if before is None:
            return None
        return prefill_step_s(
            _hist_delta(sample.prefill_time, before.prefill_time),
            _hist_delta(sample.ttft, before.ttft),
            queue,
        )
