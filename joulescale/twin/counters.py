"""The engine hook's tallies of one instance: what the rich view reads besides the scheduler."""

from __future__ import annotations


class EngineCounters:
    """Steps, tokens and busy time as the engine hook sees them, live (not a /metrics page)."""

    __slots__ = ("busy_s", "generation_tokens", "iterations", "last_iteration_s", "prompt_tokens")

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.iterations = 0
        self.busy_s = 0.0
        self.last_iteration_s: float | None = None

    def note_iteration(self, duration_s: float) -> None:
        self.iterations += 1
        self.busy_s += duration_s
        self.last_iteration_s = duration_s
