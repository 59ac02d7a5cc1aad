"""Decision latency of the clock policies, per phase, in microseconds.

Each policy decides over an evolving stream of realistic observations of one engine instance
(Llama-70B TP4 on H100): decode batches that random-walk up to 256 requests and 200k context
tokens (TPOT 100 ms), prefill queues of up to 64 prompts with conversation-like lengths and
waits. The TTFT is 3 s so that most such queues have a feasible plan: a full MPC solve is the
expensive path, while a queue that is already at risk returns early at f_max. Half of the observations use the engine-hook (rich) view,
half the metrics-only view. The first decisions are a warm-up and are not counted. The whole
measurement repeats (default 3 times, fresh policies on the same streams) and each percentile
is the lowest over the repeats, which discounts pauses caused by other processes on a shared
machine rather than by the policy. Prints ONE JSON document on stdout:

    {"decision_us": {"<policy>": {"prefill": {"p50": f, "p99": f}, "decode": {"p50": f, "p99": f}}}}

Usage: .venv/bin/python bench/controllers.py [--decisions 4000] [--repeats 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time

from joulescale.control import (
    DecodeProgress,
    Observation,
    PolicyContext,
    QueuedPrompt,
    Slo,
    make_policy,
    policy_names,
)
from joulescale.profiles import load_profile

PROFILE = "h100-sxm-llama-70b-tp4"
MAX_DECODE_BATCH = 256
MAX_CONTEXT_TOKENS = 200_000
MAX_QUEUE = 64
WARMUP = 200


def decode_stream(rng: random.Random, count: int) -> list[Observation]:
    """A decode instance: batch size random-walks, requests join, grow and leave."""
    observations = []
    requests: list[list[float]] = []  # [output_tokens, decode_seconds, context_tokens]
    now_s = 0.0
    clock_mhz = 1980
    for i in range(count):
        target = max(1, min(MAX_DECODE_BATCH, len(requests) + rng.randint(-6, 6)))
        while len(requests) < target:
            requests.append([0.0, 0.0, float(rng.randint(100, 3000))])
        while len(requests) > target:
            requests.pop(rng.randrange(len(requests)))
        iteration_s = rng.uniform(0.015, 0.06)
        now_s += iteration_s
        for request in requests:
            request[0] += 1
            request[1] += iteration_s
            request[2] += 1
        total = sum(int(r[2]) for r in requests)
        if total > MAX_CONTEXT_TOKENS:
            scale = MAX_CONTEXT_TOKENS / total
            for request in requests:
                request[2] = max(1.0, request[2] * scale)
            total = sum(int(r[2]) for r in requests)
        rich = i % 2 == 0
        observations.append(
            Observation(
                phase="decode",
                now_s=now_s,
                sm_clock_mhz=clock_mhz,
                running_requests=len(requests),
                waiting_requests=rng.choice((0, 0, 0, 0, 1)),
                kv_cache_usage=min(1.0, total / MAX_CONTEXT_TOKENS * 0.8),
                context_tokens=total,
                generation_tokens_delta=len(requests),
                iterations_delta=1,
                interval_s=iteration_s,
                last_iteration_s=iteration_s,
                mean_iteration_s=iteration_s,
                decoding=tuple(DecodeProgress(int(r[0]), r[1], int(r[2])) for r in requests)
                if rich
                else None,
            )
        )
        clock_mhz = rng.choice((990, 1200, 1410, 1605, 1980))
    return observations


def prefill_stream(rng: random.Random, count: int) -> list[Observation]:
    """A prefill instance: a queue of up to 64 prompts, lognormal lengths, spread waits."""
    observations = []
    now_s = 0.0
    for i in range(count):
        now_s += rng.uniform(0.05, 0.3)
        size = rng.randint(1, MAX_QUEUE)
        lengths = [max(16, min(16_000, int(rng.lognormvariate(6.8, 0.9)))) for _ in range(size)]
        waits = sorted((rng.uniform(0.0, 0.5) for _ in range(size)), reverse=True)
        rich = i % 2 == 0
        observations.append(
            Observation(
                phase="prefill",
                now_s=now_s,
                sm_clock_mhz=rng.choice((1200, 1605, 1980)),
                running_requests=min(size, 4),
                waiting_requests=max(0, size - 4),
                kv_cache_usage=0.1,
                context_tokens=sum(lengths[:4]),
                prompt_tokens_delta=sum(lengths[:4]),
                generation_tokens_delta=min(size, 4),
                iterations_delta=1,
                interval_s=0.1,
                last_iteration_s=rng.uniform(0.05, 0.5),
                mean_iteration_s=rng.uniform(0.05, 0.5),
                oldest_wait_s=waits[0],
                queue=tuple(QueuedPrompt(n, now_s - w) for n, w in zip(lengths, waits, strict=True))
                if rich
                else None,
            )
        )
    return observations


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def measure(name: str, observations: list[Observation], context: PolicyContext) -> dict[str, float]:
    policy = make_policy(name, context)
    timings_us = []
    for i, observation in enumerate(observations):
        start = time.perf_counter_ns()
        policy.decide(observation)
        elapsed_us = (time.perf_counter_ns() - start) / 1000.0
        if i >= WARMUP:
            timings_us.append(elapsed_us)
    timings_us.sort()
    return {"p50": round(percentile(timings_us, 0.50), 2), "p99": round(percentile(timings_us, 0.99), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    streams = {
        "prefill": prefill_stream(rng, args.decisions + WARMUP),
        "decode": decode_stream(rng, args.decisions + WARMUP),
    }
    context = PolicyContext(profile=load_profile(PROFILE), slo=Slo(ttft_ms=3000, tpot_ms=100))
    gc.collect()
    gc.freeze()  # the pre-built streams are fixtures: keep the collector from re-scanning them
    runs = [
        {
            name: {phase: measure(name, stream, context) for phase, stream in streams.items()}
            for name in policy_names()
        }
        for _ in range(max(1, args.repeats))
    ]
    result = {
        "decision_us": {
            name: {
                phase: {key: min(run[name][phase][key] for run in runs) for key in ("p50", "p99")}
                for phase in streams
            }
            for name in policy_names()
        }
    }
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
