"""Latency the engine hook adds to each vLLM scheduling step, in microseconds.

A vLLM-shaped scheduler step (the names of the pinned vLLM 0.33.0 contract: ``requests``,
``waiting``, a ``SchedulerOutput`` with ``num_scheduled_tokens`` and ``scheduled_cached_reqs``, a
request's ``num_prompt_tokens`` and ``arrival_time``) runs through ``joulescale_hook.vllm_hook``: per step one
prefill chunk of 2048 tokens, ``--decode`` decode requests and ``--waiting`` waiting prompts (the
defaults, 256 and 64, are a large batch: the cost grows with both). What is timed is the hook's
own work on the engine's thread per step: building and queueing the StepScheduled message after
``schedule()`` and the StepDone message after ``update_from_output()``. Encoding and sending run on
the publisher's thread; a reader in another process drains the real Unix socket, as the agent
does. Also reported: the same steps in the engine thread's CPU time (what the hook costs without
the waits a loaded machine adds to the wall-clock figure), the datagram's size next to compact
JSON of the same message, and the encoding time on the sender thread. The first steps are a warm-up. Prints ONE JSON document:

    {"added_us_per_schedule": {"p50": f, "p99": f}, "dropped": n, ...}

Usage: .venv/bin/python bench/engine_hook.py [--steps 20000] [--decode 256] [--waiting 64]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from typing import Any

from joulescale_hook import runtime
from joulescale_hook.schema import StepScheduled, encode
from joulescale_hook.transport import HookReceiver
from joulescale_hook.vllm_hook import HookedSchedulerMixin

WARMUP = 500


class Request:
    __slots__ = ("arrival_time", "num_computed_tokens", "num_output_tokens", "num_prompt_tokens")

    def __init__(self, prompt: int, computed: int, outputs: int, arrival: float) -> None:
        self.num_prompt_tokens = prompt
        self.num_computed_tokens = computed
        self.num_output_tokens = outputs
        self.arrival_time = arrival


class Cached:
    __slots__ = ("num_computed_tokens", "num_output_tokens", "req_ids")

    def __init__(self, req_ids: list[str], computed: list[int], outputs: list[int]) -> None:
        self.req_ids, self.num_computed_tokens, self.num_output_tokens = req_ids, computed, outputs


class Output:
    """A SchedulerOutput as vLLM builds it (its cost is vLLM's, outside the timing)."""

    __slots__ = ("num_scheduled_tokens", "scheduled_cached_reqs", "scheduled_new_reqs")

    def __init__(self, scheduled: dict[str, int], cached: Cached) -> None:
        self.num_scheduled_tokens = scheduled
        self.scheduled_new_reqs: list[Any] = []
        self.scheduled_cached_reqs = cached


class Base:
    def __init__(self) -> None:
        self.requests: dict[str, Request] = {}
        self.waiting: deque[Request] = deque()


class Timed(HookedSchedulerMixin, Base):
    """Times only the hook's part of schedule() and update_from_output()."""


def drain(path: str, ready: Any, stop: Any) -> None:
    receiver = HookReceiver(path)
    ready.set()
    receiver.sock.settimeout(0.1)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            receiver.sock.recv(1 << 16)
    receiver.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="steps timed (default 20000)")
    parser.add_argument("--decode", type=int, default=256, help="decode requests per step (default 256)")
    parser.add_argument("--waiting", type=int, default=64, help="waiting prompts (default 64)")
    args = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="joulescale-hook-bench-")
    path = os.path.join(directory, "pod.sock")
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    reader = ctx.Process(target=drain, args=(path, ready, stop), daemon=True)
    reader.start()
    ready.wait(30)
    os.environ["JOULESCALE_HOOK_SOCKET"] = path
    runtime.reset()

    sched = Timed()
    now = time.time()
    sched.requests["p"] = Request(8192, 2048, 0, now - 0.2)  # before its second chunk of four
    for i in range(args.decode):
        sched.requests[f"d{i}"] = Request(1000 + 7 * i, 1000 + 7 * i + 50 + i, 50 + i, now - 3.0)
    sched.waiting.extend(Request(500 + 13 * i, 0, 0, now - 0.01 * i) for i in range(args.waiting))
    plan = {"p": 2048, **{f"d{i}": 1 for i in range(args.decode)}}

    added: list[float] = []
    scheduled_part: list[float] = []
    cpu: list[float] = []
    gc.collect()
    for step in range(WARMUP + args.steps):
        output = Output(plan, Cached(list(plan), [r.num_computed_tokens for r in sched.requests.values()],
                                     [r.num_output_tokens for r in sched.requests.values()]))
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        sched._joulescale_scheduled(output)
        t1 = time.perf_counter_ns()
        sched._joulescale_done(output)
        t2 = time.perf_counter_ns()
        c2 = time.thread_time_ns()
        if step >= WARMUP:
            added.append((t2 - t0) / 1e3)
            scheduled_part.append((t1 - t0) / 1e3)
            cpu.append((c2 - c0) / 1e3)
        time.sleep(0.001)  # a step lasts milliseconds; the sender thread runs in between

    publisher = runtime.process_publisher()
    assert publisher is not None
    publisher.flush(5.0)
    stats = publisher.stats()
    stop.set()
    reader.join(5)

    message = StepScheduled(1, 0, time.monotonic_ns(), 1, 2048, args.decode, 0, args.waiting,  # type: ignore[arg-type]
                            [8192], [0], [2048], [time.monotonic_ns()],
                            [r.num_computed_tokens for k, r in sched.requests.items() if k != "p"],
                            [r.num_output_tokens for k, r in sched.requests.items() if k != "p"],
                            [r.num_prompt_tokens for r in sched.waiting], [time.monotonic_ns()] * args.waiting)
    encode_us = []
    for _ in range(2000):
        t0 = time.perf_counter_ns()
        data = encode(message)
        encode_us.append((time.perf_counter_ns() - t0) / 1e3)
    fields = {f: list(v) if isinstance(v, list) else v
              for f, v in ((f, getattr(message, f)) for f in StepScheduled.__dataclass_fields__)}
    as_json = json.dumps(fields, separators=(",", ":"))
    json_us = []
    for _ in range(2000):
        t0 = time.perf_counter_ns()
        json.dumps(fields, separators=(",", ":"))
        json_us.append((time.perf_counter_ns() - t0) / 1e3)

    print(json.dumps({
        "added_us_per_schedule": {"p50": round(statistics.median(added), 2),
                                  "p99": round(percentile(added, 0.99), 2),
                                  "max": round(max(added), 2)},
        "cpu_us_per_schedule": {"p50": round(statistics.median(cpu), 2),
                                "p99": round(percentile(cpu, 0.99), 2)},
        "of_which_after_schedule_us": {"p50": round(statistics.median(scheduled_part), 2),
                                       "p99": round(percentile(scheduled_part, 0.99), 2)},
        "dropped": stats.dropped,
        "sent": stats.sent,
        "errors": stats.errors + runtime.failures(),
        "steps": args.steps,
        "decode_requests": args.decode,
        "waiting_requests": args.waiting,
        "message_bytes": {"binary": len(data), "compact_json": len(as_json.encode())},
        "encode_us_on_sender_thread": {"binary_p50": round(statistics.median(encode_us), 2),
                                       "compact_json_p50": round(statistics.median(json_us), 2)},
        "python": sys.version.split()[0],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
