"""One engine model: the schedulers of a P/D prefill instance, a decode instance and an
aggregated (colocated) instance.

The twin and e2e's simulated engine both drive this model; there is no second implementation
of batching, chunked prefill, admission or preemption. The model is pure: it has no clock and
no GPU. Its caller owns time and the GPU's clock; the model reports what happens to an
optional ``joulescale.engines.recorder.MetricsRecorder`` from inside its own calls.

Driving protocol (the same for ``PrefillModel``, ``DecodeModel`` and ``AggregatedModel``), all times in seconds on
the caller's clock, which must never go backwards:

1. ``enqueue(request, now_s)`` when a request reaches the instance (prefill: it arrives;
   decode: its KV cache has landed). It waits for the next step boundary.
2. When the instance is not ``busy`` and may have work: ``start_step(now_s)``. False: nothing
   to run; call it again at the next ``enqueue``. True: a step runs from ``now_s``.
3. The step lasts ``step_latency_s(sm_clock_mhz)`` at a constant clock. A caller whose clock
   changes mid-step (the twin's ``SimGpuGroup``) integrates the work left at the new clock; a
   real-time caller sleeps that long at the clock in force. The function may be called any
   number of times during the step; it does not change state.
4. At the step's end: ``finish_step(end_s, step_s)`` with ``step_s`` the step's real duration;
   it returns the requests the step completed (prefill: prefill done, to hand to a decode
   instance; decode and aggregated: finished; an aggregated model's ``prefilled`` then holds
   the prompts whose prefill the step completed, with their first token). Then go to 2 at once
   (continuous batching: the next step starts when this one ends). A step's power per GPU is
   ``step_power_watts(sm_clock_mhz)``: an aggregated step mixes the phases, and any step's
   overhead (``physics.step_overhead_s``) may leave the GPU idle for part of it.

A scrape at any moment reads ``recorder.sample()``: the page as the engine's dialect published
it, never the scheduler's live state.
"""

from joulescale.engines.model.aggregated import AggregatedModel
from joulescale.engines.model.decode import DecodeModel
from joulescale.engines.model.kv_rules import KvRules
from joulescale.engines.model.prefill import PrefillModel, chunk_squared_tokens
from joulescale.engines.model.request import EngineRequest

__all__ = ["AggregatedModel", "DecodeModel", "EngineRequest", "KvRules", "PrefillModel", "chunk_squared_tokens"]
