"""Decode slack banking: TPOT is an average over a request's tokens, so fast iterations bank
time that later ones may spend (docs/policies.md, "joulescale")."""

from __future__ import annotations

from collections.abc import Sequence

from joulescale.engines.observation import DecodeProgress, Observation


def rich_decode_budget_s(
    decoding: Sequence[DecodeProgress], target_s: float, spend_tokens: int, max_budget_s: float
) -> float:
    """Next-iteration budget from each request's own progress (engine-hook view).

    A request that has produced n tokens in d seconds has banked target x n - d; it may spend
    that over the next ``spend_tokens`` tokens (a negative bank makes it catch up). The batch
    budget is the tightest request's, at most ``max_budget_s``.
    """
    if not decoding:
        return min(target_s, max_budget_s)
    deficit_s = max(r.decode_seconds - target_s * r.output_tokens for r in decoding)
    return min(max_budget_s, target_s - deficit_s / spend_tokens)


class SlackBank:
    """The metrics-only stand-in: an instance-wide bank fed by measured iteration times.

    Bounded both ways and decaying, because requests join and leave and a new request has
    banked nothing: the bank never lets one iteration exceed the target by more than
    cap / spend_tokens, and a deficit at most cancels the target (so f_max catches up).
    """

    def __init__(self, cap_tokens: float, decay: float, spend_tokens: int) -> None:
        self.cap_tokens = cap_tokens
        self.decay = decay
        self.spend_tokens = spend_tokens
        self.banked_s = 0.0

    def update(self, observation: Observation, target_s: float) -> None:
        if observation.idle:
            self.banked_s = 0.0
            return
        iterations = observation.iterations_delta
        mean_s = observation.mean_iteration_s
        if iterations <= 0 or mean_s is None:
            return
        banked = self.banked_s * self.decay**iterations + iterations * (target_s - mean_s)
        self.banked_s = min(max(banked, -self.spend_tokens * target_s), self.cap_tokens * target_s)

    def budget_s(self, target_s: float) -> float:
        return target_s + self.banked_s / self.spend_tokens
