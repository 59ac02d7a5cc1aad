"""The life of one request in the twin, with the timestamps the twin's SLO metrics use."""

from __future__ import annotations

from joulescale.engines.model import EngineRequest


class SimRequest(EngineRequest):
    """An engine request plus what only the cluster knows: the KV transfer and where it decodes."""

    __slots__ = ("decode_instance", "finish_s", "first_token_s", "prefill_done_s", "prefill_start_s")

    def __init__(self, request_id: int, arrival_s: float, prompt_tokens: int, output_tokens: int) -> None:
        super().__init__(request_id, arrival_s, prompt_tokens, output_tokens)
        self.prefill_start_s = -1.0
        """When its prefill instance first scheduled a chunk of it."""
        self.prefill_done_s = -1.0
        self.first_token_s = -1.0
        """When the first token is usable by the decode side: prefill done + KV transfer."""
        self.finish_s = -1.0
        self.decode_instance = -1

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first (0 for single-token outputs)."""
        if self.output_tokens <= 1:
            return 0.0
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)
