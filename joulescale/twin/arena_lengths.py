"""The length mix of ML.ENERGY's "Text Conversation" task (LM Arena chat), for ``twin steady``.

ML.ENERGY's leaderboard v3 (the source of the calibration figures, docs/physics.md) sends prompts
of LM Arena conversations (``lmarena-ai/arena-human-preference-100k``) and lets the model answer
(at most 4096 tokens). What a steady-state measurement depends on is the lengths, so the twin
needs the same lengths, not the Azure conversation trace's (mean prompt 1155 tokens, output 211:
five times more prompt per output token, docs/physics.md, "Checking the twin against ML.ENERGY").

- **Outputs**: the published histogram of Llama-3.1-70B-Instruct's answers in ML.ENERGY's own run
  (leaderboard data, ``meta-llama__Llama-3.1-70B-Instruct__lm-arena-chat.json``, 4x H100,
  max_num_seqs 128: 1024 requests in 50 bins from 2 to 4096 tokens, mean 358.9); each request
  takes its bin's middle.
- **Prompts**: ML.ENERGY sends one request per turn of a conversation, whose prompt is the whole
  history (every earlier prompt and answer, then the new prompt). Its prompts' lengths are not
  published; LMSYS-Chat-1M, the same platform's conversations a year earlier (Zheng et al.,
  "LMSYS-Chat-1M", ICLR 2024, Table 1), averages 2.0 turns, 69.5 tokens per prompt and 214.5 per
  answer. Taken as two turns each: first turns of 70 tokens and second turns of
  70 + 215 + 70 = 355 tokens, alternating (mean 212). This is an assumption of ours;
  docs/physics.md shows how the figures move with it.

The order is a fixed shuffle, so every run sees the same sequence.
"""

from __future__ import annotations

import random

NAME = "lmarena-chat"
OUTPUT_BIN_EDGES = (2.0, 4096.0)
OUTPUT_BIN_COUNTS = (
    265, 102, 88, 106, 91, 87, 78, 53, 44, 28, 20, 18, 12, 9, 6, 1, 1, 0, 3, 2, 2, 0, 0, 1, 1,
    0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
)
"""Requests per output-length bin, ML.ENERGY leaderboard v3, Llama-3.1-70B, lm-arena-chat, 4x H100, 128 seqs."""
PROMPT_TOKENS = 70
"""LMSYS-Chat-1M's 69.5 tokens per prompt, rounded."""
ANSWER_TOKENS = 215
"""LMSYS-Chat-1M's 214.5 tokens per answer, rounded (the history a second turn carries)."""
SHUFFLE_SEED = 0


def output_lengths() -> list[int]:
    """One length per published request: its bin's middle."""
    low, high = OUTPUT_BIN_EDGES
    width = (high - low) / len(OUTPUT_BIN_COUNTS)
    lengths: list[int] = []
    for index, count in enumerate(OUTPUT_BIN_COUNTS):
        lengths += [round(low + width * (index + 0.5))] * count
    return lengths


def prompt_lengths(count: int) -> list[int]:
    """First and second turns alternating: the second carries the first prompt and its answer."""
    second = PROMPT_TOKENS + ANSWER_TOKENS + PROMPT_TOKENS
    return [PROMPT_TOKENS if i % 2 == 0 else second for i in range(count)]


def lengths() -> tuple[tuple[int, int], ...]:
    """(prompt, output) tokens per request, in a fixed shuffled order."""
    outputs = output_lengths()
    random.Random(SHUFFLE_SEED).shuffle(outputs)
    return tuple(zip(prompt_lengths(len(outputs)), outputs, strict=True))
