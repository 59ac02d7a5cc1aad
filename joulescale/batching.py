"""The engine's token budget per step: one default shared by the renderer, the policies and the twin."""

from __future__ import annotations

DEFAULT_TOKEN_BUDGET = 8192
"""Most tokens one engine step schedules: vLLM's --max-num-batched-tokens, SGLang's
--chunked-prefill-size and --max-prefill-tokens. The operator renders it from
spec.engine.maxBatchedTokens; the prefill policies and the twin plan batches with it."""
