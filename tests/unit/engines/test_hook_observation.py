"""The rich view: the engine hook's messages -> Observation, through the one ObservationBuilder."""

from __future__ import annotations

import pytest

from joulescale.engines.hook import HookSchedule, HookStepDone, ScheduledDecode, ScheduledPrefill
from joulescale.engines.observation import QueuedPrompt
from joulescale.engines.observe import ObservationBuilder


def _prefill_schedule(step_id: int, at_s: float) -> HookSchedule:
    running = (ScheduledPrefill(3000, 2048, 952, 1.0), ScheduledPrefill(500, 0, 500, 1.5))
    waiting = (QueuedPrompt(800, 1.8), QueuedPrompt(7000, 1.9))
    return HookSchedule(step_id, at_s, running, (), waiting, prefill_requests=2, prefill_tokens=1452,
                        decode_requests=0, decode_kv_tokens=0, waiting_requests=2)


def test_prefill_observation_is_the_schedule_and_the_steps_that_ended() -> None:
    builder = ObservationBuilder("prefill")
    builder.hook_schedule(_prefill_schedule(7, 2.0))
    first = builder.build_rich(2.0, 1980, 100_000)
    assert (first.running_requests, first.waiting_requests, first.context_tokens) == (2, 2, 1452)
    assert first.kv_cache_usage == pytest.approx(0.01452)
    assert first.queue == (QueuedPrompt(3000, 1.0), QueuedPrompt(500, 1.5), QueuedPrompt(800, 1.8),
                           QueuedPrompt(7000, 1.9))
    assert first.oldest_wait_s == pytest.approx(1.0)
    assert (first.iterations_delta, first.last_iteration_s, first.mean_iteration_s) == (0, None, None)
    builder.hook_step_done(HookStepDone(7, 2.08, 0.08))
    # Both prompts completed with step 7: their tokens and first tokens count once.
    after = builder.build_rich(2.1, 1500, 100_000)
    assert (after.iterations_delta, after.last_iteration_s, after.mean_iteration_s) == (1, 0.08, 0.08)
    assert (after.prompt_tokens_delta, after.generation_tokens_delta) == (3500, 2)
    assert after.interval_s == pytest.approx(0.1)
    assert after.sm_clock_mhz == 1500
    # The step ended and nothing new was scheduled: the engine is idle.
    assert after.idle
    assert after.queue == ()
    again = builder.build_rich(2.2, 1500, 100_000)
    assert (again.iterations_delta, again.prompt_tokens_delta) == (0, 0)


def test_a_step_that_ends_after_the_next_was_scheduled_leaves_the_next_in_flight() -> None:
    """vLLM's async scheduling publishes step N+1 before step N's end."""
    builder = ObservationBuilder("prefill")
    builder.hook_schedule(_prefill_schedule(1, 1.0))
    builder.hook_schedule(_prefill_schedule(2, 1.05))
    builder.hook_step_done(HookStepDone(1, 1.06, 0.06))
    observation = builder.build_rich(1.07, 1980, None)
    assert observation.running_requests == 2
    assert observation.iterations_delta == 1
    assert observation.kv_cache_usage == 0.0  # no capacity known, no usage made up


def test_ages_are_measured_on_the_messages_clock() -> None:
    """The reader's clock need not agree with the engine's: ages come from the message."""
    builder = ObservationBuilder("prefill")
    builder.hook_schedule(_prefill_schedule(1, 2.0))
    observation = builder.build_rich(500.0, 1980, None, published_s=499.99)
    assert observation.queue is not None
    assert [round(499.99 - q.arrival_s, 6) for q in observation.queue] == [1.0, 0.5, 0.2, 0.1]
    assert observation.oldest_wait_s == pytest.approx(1.01)


def test_an_arrival_in_the_future_reads_as_arrived_now() -> None:
    builder = ObservationBuilder("prefill")
    schedule = _prefill_schedule(1, 2.0)
    builder.hook_schedule(HookSchedule(1, 2.0, schedule.prefill, (), (QueuedPrompt(10, 99.0),), 2, 1452, 0, 0, 1))
    observation = builder.build_rich(2.0, 1980, None)
    assert observation.queue is not None
    assert observation.queue[-1].arrival_s == 2.0


def test_decode_progress_is_dated_by_the_steps_the_request_ran_in() -> None:
    """A running request is in every step: with n tokens generated it began n schedules ago."""
    builder = ObservationBuilder("decode")
    for step in range(1, 6):
        batch = (ScheduledDecode(1000 + step, step - 1), ScheduledDecode(200 + step, step - 3)) if step > 3 else (
            ScheduledDecode(1000 + step, step - 1),)
        builder.hook_schedule(HookSchedule(step, 0.02 * step, (), batch, (QueuedPrompt(50, 0.095),),
                                           0, 0, len(batch), sum(r.kv_tokens for r in batch), 1))
        if step < 5:
            builder.hook_step_done(HookStepDone(step, 0.02 * step + 0.019, 0.019))
    observation = builder.build_rich(0.1, 1200, 10_000)
    assert observation.decoding is not None
    assert [(r.output_tokens, r.context_tokens) for r in observation.decoding] == [(4, 1005), (2, 205)]
    assert [round(r.decode_seconds, 9) for r in observation.decoding] == [0.08, 0.04]
    assert (observation.running_requests, observation.context_tokens, observation.waiting_requests) == (2, 1210, 1)
    assert observation.kv_cache_usage == pytest.approx(0.121)
    assert observation.oldest_wait_s == pytest.approx(0.005)
    assert observation.iterations_delta == 4
    assert observation.generation_tokens_delta == 1 + 1 + 1 + 2


def test_steps_whose_messages_were_dropped_are_placed_between_the_known_ones() -> None:
    """A datagram queue overflows when the reader lags: the step ids still count every step."""
    builder = ObservationBuilder("decode")
    builder.hook_schedule(HookSchedule(10, 1.0, (), (ScheduledDecode(10, 0),), (), 0, 0, 1, 10, 0))
    builder.hook_schedule(HookSchedule(20, 1.2, (), (ScheduledDecode(20, 10),), (), 0, 0, 1, 20, 0))
    builder.hook_schedule(HookSchedule(30, 1.4, (), (ScheduledDecode(30, 5), ScheduledDecode(40, 10),
                                                     ScheduledDecode(50, 40)), (), 0, 0, 3, 120, 0))
    observation = builder.build_rich(1.4, 1200, None)
    assert observation.decoding is not None
    # Began at step 25 (between 20 and 30), at step 20 (known), and at step -10 (extrapolated
    # back from step 10 at the mean period, 20 ms).
    assert [round(r.decode_seconds, 9) for r in observation.decoding] == [0.1, 0.2, 0.8]


def test_a_lone_step_dates_a_request_to_itself_and_a_restart_forgets_the_steps() -> None:
    builder = ObservationBuilder("decode")
    builder.hook_schedule(HookSchedule(9, 2.0, (), (ScheduledDecode(20, 8),), (), 0, 0, 1, 20, 0))
    observation = builder.build_rich(2.0, 1200, None)
    assert observation.decoding is not None
    assert observation.decoding[0].decode_seconds == 0.0
    builder.hook_schedule(HookSchedule(10, 2.02, (), (ScheduledDecode(20, 1),), (), 0, 0, 1, 20, 0))
    builder.hook_schedule(HookSchedule(1, 3.0, (), (ScheduledDecode(20, 1),), (), 0, 0, 1, 20, 0))
    restarted = builder.build_rich(3.0, 1200, None)
    assert restarted.decoding is not None
    assert restarted.decoding[0].decode_seconds == 0.0


def test_a_step_end_never_scheduled_counts_as_a_step_without_tokens() -> None:
    builder = ObservationBuilder("decode")
    builder.hook_step_done(HookStepDone(41, 1.0, 0.02))
    builder.hook_step_done(HookStepDone(41, 1.02, 0.02))
    observation = builder.build_rich(1.1, 1200, None)
    assert (observation.iterations_delta, observation.generation_tokens_delta) == (2, 0)
    assert observation.idle
    assert observation.decoding == ()


def test_reset_hook_forgets_the_messages() -> None:
    builder = ObservationBuilder("prefill")
    builder.hook_schedule(_prefill_schedule(1, 1.0))
    builder.reset_hook()
    observation = builder.build_rich(1.0, 1980, None)
    assert observation.idle
    assert builder.hook_latest is None


def test_with_the_next_step_decided_ahead_the_view_runs_the_running_step_and_queues_the_next() -> None:
    """vLLM publishes step 2 at step 1's start: the policy deciding step 1's clock sees step 1's
    prompts running, then step 2's new prompt and the queue it left waiting; the chunk of step 2
    that continues a running prompt is that prompt, counted once."""
    builder = ObservationBuilder("prefill")
    step_1 = HookSchedule(1, 1.0, (ScheduledPrefill(3000, 0, 2048, 0.9), ScheduledPrefill(400, 0, 400, 0.95)), (),
                          (), prefill_requests=2, prefill_tokens=2448, decode_requests=0, decode_kv_tokens=0,
                          waiting_requests=0)
    builder.hook_schedule(step_1)
    step_2 = HookSchedule(2, 1.0, (ScheduledPrefill(3000, 2048, 952, 0.9), ScheduledPrefill(600, 0, 600, 0.97)), (),
                          (QueuedPrompt(900, 0.99),), prefill_requests=2, prefill_tokens=1552, decode_requests=0,
                          decode_kv_tokens=0, waiting_requests=1)
    builder.hook_schedule(step_2)
    at_start = builder.build_rich(1.0, 1980, None)
    assert (at_start.running_requests, at_start.context_tokens, at_start.waiting_requests) == (2, 2448, 2)
    assert at_start.queue == (QueuedPrompt(3000, 0.9), QueuedPrompt(400, 0.95), QueuedPrompt(600, 0.97),
                              QueuedPrompt(900, 0.99))
    builder.hook_step_done(HookStepDone(1, 1.2, 0.2))
    # Step 1 ended: step 2 runs, decided at step 1's start; nothing is decided after it yet.
    after = builder.build_rich(1.2, 1980, None, published_s=1.0)
    assert (after.running_requests, after.context_tokens, after.waiting_requests) == (2, 1552, 1)
    assert after.queue == (QueuedPrompt(3000, 0.9), QueuedPrompt(600, 0.97), QueuedPrompt(900, 0.99))
    assert (after.iterations_delta, after.prompt_tokens_delta) == (1, 400)
