"""The life of one request in the twin, with the timestamps the metrics are computed from."""

from __future__ import annotations


class SimRequest:
    """Mutable on purpose (slots, no per-event copies): the twin touches it at each phase change."""

    __slots__ = (
        "arrival_s",
        "decode_done_tokens",
        "decode_instance",
        "epoch",
        "finish_iteration",
        "finish_s",
        "first_token_s",
        "join_iteration",
        "output_tokens",
        "preemptions",
        "prefill_done_s",
        "prefill_start_s",
        "prompt_tokens",
        "request_id",
    )

    def __init__(self, request_id: int, arrival_s: float, prompt_tokens: int, output_tokens: int) -> None:
        self.request_id = request_id
        self.arrival_s = arrival_s
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.prefill_start_s = -1.0
        self.prefill_done_s = -1.0
        self.first_token_s = -1.0
        """When the first token is usable by the decode side: prefill done + KV transfer."""
        self.finish_s = -1.0
        self.decode_instance = -1
        self.decode_done_tokens = 0
        """Decode tokens generated before the current admission (non-zero after a preemption)."""
        self.join_iteration = 0
        self.finish_iteration = 0
        self.epoch = 0
        """Bumped on preemption so stale entries of the finish heap are skipped."""
        self.preemptions = 0

    @property
    def decode_tokens(self) -> int:
        """Tokens the decode instance generates: all but the first."""
        return self.output_tokens - 1

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first (0 for single-token outputs)."""
        if self.output_tokens <= 1:
            return 0.0
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)
