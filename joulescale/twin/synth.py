"""A synthetic long-context workload: log-normal prompt lengths, Poisson arrivals, from a seed.

Long-context serving (RAG, code agents, document QA) has prompts spread over two orders of
magnitude with a heavy right tail; a log-normal around a median with a hard cap at the model's
context window is the usual stand-in. ``joulescale twin synth`` writes one as JSON lines that
``--trace`` reads back, so a user can try the twin on long prompts before having a trace.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

from joulescale.twin.traces import Trace, TraceRequest, digest_of


@dataclass(frozen=True, slots=True)
class LongContextSpec:
    """What the generator draws; every length in tokens, the rate in requests per second."""

    requests: int = 2000
    rate_per_s: float = 1.0
    prompt_median_tokens: int = 8192
    prompt_sigma: float = 1.0
    """Log-normal shape: 1.0 puts the 5th-95th percentiles near median / 5 and median x 5."""
    prompt_min_tokens: int = 256
    prompt_max_tokens: int = 131_072
    """128k, the context window of Llama-3.1."""
    output_median_tokens: int = 256
    output_sigma: float = 0.8
    output_max_tokens: int = 4096
    seed: int = 1

    def __post_init__(self) -> None:
        if self.requests < 2 or not self.rate_per_s > 0 or not 0 < self.prompt_min_tokens <= \
                self.prompt_median_tokens <= self.prompt_max_tokens or not 0 < self.output_median_tokens <= \
                self.output_max_tokens or self.prompt_sigma < 0 or self.output_sigma < 0:
            raise ValueError("need >= 2 requests, a positive rate and 0 < min <= median <= max token lengths")


def _lognormal(rng: random.Random, median: int, sigma: float, low: int, high: int) -> int:
    return max(low, min(high, round(rng.lognormvariate(math.log(median), sigma))))


def long_context_trace(spec: LongContextSpec) -> Trace:
    """The trace ``spec`` describes; the same spec gives the same trace."""
    rng = random.Random(spec.seed)
    t = 0.0
    requests: list[TraceRequest] = []
    for _ in range(spec.requests):
        prompt = _lognormal(rng, spec.prompt_median_tokens, spec.prompt_sigma, spec.prompt_min_tokens,
                            spec.prompt_max_tokens)
        output = _lognormal(rng, spec.output_median_tokens, spec.output_sigma, 1, spec.output_max_tokens)
        requests.append(TraceRequest(round(t, 3), prompt, output))
        t += rng.expovariate(spec.rate_per_s)
    name = f"synthetic-long-context-{spec.prompt_median_tokens}-seed{spec.seed}"
    frozen = tuple(requests)
    return Trace(name, frozen, digest_of(frozen))


def to_jsonl(trace: Trace) -> str:
    """JSON lines as ``--trace`` reads them: timestamp in ms, input and output lengths."""
    return "".join(json.dumps({"timestamp": round(r.arrival_s * 1000.0, 3), "input_length": r.prompt_tokens,
                               "output_length": r.output_tokens}) + "\n" for r in trace.requests)
