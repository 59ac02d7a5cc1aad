"""What a prompt's step costs on an aggregated instance: the decodes run in it too.

vLLM V1 schedules the running decodes first in every step and fills the rest of the token
budget with prompt chunks, so a step that carries a chunk also pays a whole decode step (the
weights read once, the decodes' attention over their contexts) and the chunk adds only its
marginal cost (``physics.mixed_step_parts_s``). A prefill controller that predicts pure prefill
steps underestimates every prompt's time on such an instance by the decode step, more so at a
low clock (both parts stretch), and lets the clock fall too far to hold the TTFT target.

``MixedStepPredictor`` is the aggregated instance's prefill predictor: ``prefill_s`` is the
mixed step with the decode load last observed on the instance (``observe_decodes``, from the
same scrape's decode view), and the plain prefill step while no decode runs. ``decode_s`` is
the profile's, unchanged.
"""

from __future__ import annotations

from joulescale.profiles import GpuProfile, physics


class MixedStepPredictor:
    """The profile's physics for a prefill step that shares its step with the instance's decodes."""

    __slots__ = ("decode_batch", "decode_context_tokens", "profile", "version")

    def __init__(self, profile: GpuProfile) -> None:
        self.profile = profile
        self.decode_batch = 0
        self.decode_context_tokens = 0
        self.version = 0
        """Counts changes of the decode load, so cached predictions (``OnlineCorrection.version``) renew."""

    def observe_decodes(self, batch: int, context_tokens: int) -> None:
        """The decodes that will share the coming steps (the decode view's running batch and cache)."""
        load = (max(batch, 0), max(context_tokens, 0))
        if load != (self.decode_batch, self.decode_context_tokens):
            self.decode_batch, self.decode_context_tokens = load
            self.version += 1

    def prefill_s(self, batch_tokens: int, squared_tokens: float, sm_clock_mhz: float) -> float:
        decode, prefill = physics.mixed_step_parts_s(self.profile, self.decode_batch, self.decode_context_tokens,
                                                     batch_tokens, squared_tokens, sm_clock_mhz)
        return decode + prefill

    def decode_s(self, batch_size: int, context_tokens: int, sm_clock_mhz: float) -> float:
        return physics.decode_latency_s(self.profile, batch_size, context_tokens, sm_clock_mhz)
