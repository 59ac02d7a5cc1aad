"""One request as an engine instance sees it: its sizes, its progress and its timestamps there."""

from __future__ import annotations


class EngineRequest:
    """Mutable on purpose (slots, no per-step copies): the model touches it at each phase change.

    The ``engine_*`` and ``scheduled_s`` fields belong to the instance that holds the request now
    (``enqueue`` resets them): in a P/D cluster the same request passes through a prefill and a
    decode instance, and each engine measures its own queue, prefill and first-token times.
    """

    __slots__ = (
        "arrival_s",
        "chunk_tokens",
        "decode_done_tokens",
        "engine_arrival_s",
        "engine_first_token_s",
        "epoch",
        "finish_iteration",
        "join_iteration",
        "last_token_s",
        "output_tokens",
        "preemptions",
        "prefilled_tokens",
        "prompt_tokens",
        "request_id",
        "scheduled_s",
    )

    def __init__(self, request_id: int, arrival_s: float, prompt_tokens: int, output_tokens: int) -> None:
        self.request_id = request_id
        self.arrival_s = arrival_s
        """When the client sent it (the trace's time)."""
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.engine_arrival_s = arrival_s
        """When it reached the instance that holds it now."""
        self.scheduled_s = -1.0
        """When that instance first scheduled it (-1: not yet); its queue time ends here."""
        self.engine_first_token_s = -1.0
        """When that instance produced its first token for it (-1: not yet)."""
        self.prefilled_tokens = 0
        """Prompt tokens prefilled so far (chunked prefill)."""
        self.chunk_tokens = 0
        """Prompt tokens of the step in flight."""
        self.decode_done_tokens = 0
        """Decode tokens generated before the current admission (non-zero after a preemption)."""
        self.join_iteration = 0
        self.finish_iteration = 0
        self.epoch = 0
        """Bumped on preemption so stale entries of the finish heap are skipped."""
        self.preemptions = 0
        self.last_token_s = -1.0
        """When its latest token was generated on this instance (-1: none yet)."""

    @property
    def decode_tokens(self) -> int:
        """Tokens a P/D decode instance generates: all but the first (the prefill instance's)."""
        return self.output_tokens - 1

    def arrive(self, now_s: float) -> None:
        """It reaches a new instance: that engine's clocks for it start now."""
        self.engine_arrival_s = now_s
        self.scheduled_s = -1.0
        self.engine_first_token_s = -1.0
        self.last_token_s = -1.0
        self.prefilled_tokens = 0
        self.chunk_tokens = 0
