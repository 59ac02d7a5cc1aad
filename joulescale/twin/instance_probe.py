"""One instance of one phase, alone, at one fixed clock: what a candidate table is made of.

A probe replays ``count`` requests arriving as a Poisson process at ``rate_rps``, their lengths
drawn from a length mix, through the core's engine model (``PrefillModel`` or ``DecodeModel``,
the schedulers the twin's clusters run), and measures each request's latency for its phase and
the instance's energy (``physics``: busy power per step at its batch, idle power between steps).

- prefill: time to first token = queueing + chunked prefill + the KV transfer to a decode
  instance over the cluster's medium (the decode instance's first step adds a few ms more).
- decode: time per output token after the first, counted from when the KV cache has landed; the
  decode instance runs vLLM's admission, KV watermark and preemption as in the twin.

A probe stops early once more requests missed the target than the SLO percentile allows.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.policy import Slo
from joulescale.engines.model import DecodeModel, EngineRequest, PrefillModel
from joulescale.engines.observation import Phase
from joulescale.planning.forecast import LengthMix
from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile
from joulescale.twin.kv_transfer import KvMedium

DECODE_MAX_RUNNING = 512
"""vLLM's --max-num-seqs default on a decode instance, as ``ClusterConfig.decode_max_running``."""
KV_WATERMARK = 0.01


@dataclass(frozen=True, slots=True)
class ProbeResult:
    met_slo: bool
    requests: int
    """Requests completed (fewer than offered when the probe stopped early)."""
    span_s: float
    energy_j: float

    @property
    def mean_watts(self) -> float:
        return self.energy_j / self.span_s if self.span_s > 0 else 0.0


def _requests(mix: LengthMix, rate_rps: float, count: int, seed: int) -> list[EngineRequest]:
    rng = random.Random(seed)
    now = 0.0
    requests = []
    for i in range(count):
        now += rng.expovariate(rate_rps)
        requests.append(EngineRequest(i, now, rng.choice(mix.prompt_tokens), rng.choice(mix.output_tokens)))
    return requests


def _allowed_misses(count: int, slo: Slo) -> int:
    return int((count - 1) * (1.0 - slo.percentile / 100.0))


def probe(phase: Phase, profile: GpuProfile, clock_mhz: int, mix: LengthMix, slo: Slo, rate_rps: float,
          count: int, medium: KvMedium, seed: int = 1) -> ProbeResult:
    """Replay ``count`` Poisson arrivals at ``rate_rps`` through one instance at ``clock_mhz``."""
    requests = _requests(mix, rate_rps, count, seed)
    if phase == "prefill":
        return _prefill(profile, clock_mhz, requests, slo, medium)
    return _decode(profile, clock_mhz, [r for r in requests if r.output_tokens > 1], slo)


def _prefill(profile: GpuProfile, clock: int, requests: list[EngineRequest], slo: Slo,
             medium: KvMedium) -> ProbeResult:
    model: PrefillModel[EngineRequest] = PrefillModel(profile, DEFAULT_TOKEN_BUDGET)
    target_s, allowed = slo.ttft_ms / 1000.0, _allowed_misses(len(requests), slo)
    tp = profile.tensor_parallel_size
    now, energy, misses, done, index = 0.0, 0.0, 0, 0, 0
    link_free_s = 0.0
    while done < len(requests):
        while index < len(requests) and requests[index].arrival_s <= now:
            model.enqueue(requests[index], requests[index].arrival_s)
            index += 1
        if not model.start_step(now):
            next_s = requests[index].arrival_s
            energy += physics.idle_energy_j(profile, next_s - now)
            now = next_s
            continue
        step_s = model.step_latency_s(clock)
        energy += tp * model.step_power_watts(clock) * step_s
        now += step_s
        for request in model.finish_step(now, step_s):
            link_free_s = max(now, link_free_s) + medium.transfer_s(request.prompt_tokens, profile.kv_bytes_per_token)
            done += 1
            if link_free_s - request.arrival_s > target_s:
                misses += 1
                if misses > allowed:
                    return ProbeResult(False, done, now, energy)
    return ProbeResult(True, done, now, energy)


def _decode(profile: GpuProfile, clock: int, requests: list[EngineRequest], slo: Slo) -> ProbeResult:
    model: DecodeModel[EngineRequest] = DecodeModel(profile, profile.kv_capacity_tokens, DECODE_MAX_RUNNING,
                                                    KV_WATERMARK)
    target_s, allowed = slo.tpot_ms / 1000.0, _allowed_misses(len(requests), slo)
    tp = profile.tensor_parallel_size
    arrivals = [(r.arrival_s, r.request_id, r) for r in requests]
    heapq.heapify(arrivals)
    now, energy, misses, done = 0.0, 0.0, 0, 0
    while done < len(requests):
        while arrivals and arrivals[0][0] <= now:
            _, _, request = heapq.heappop(arrivals)
            model.enqueue(request, request.arrival_s)
        if not model.start_step(now):
            if not arrivals:
                return ProbeResult(False, done, now, energy)  # a request that can never be admitted
            next_s = arrivals[0][0]
            energy += physics.idle_energy_j(profile, next_s - now)
            now = next_s
            continue
        step_s = model.step_latency_s(clock)
        energy += tp * model.step_power_watts(clock) * step_s
        now += step_s
        for request in model.finish_step(now, step_s):
            done += 1
            # As the twin's TPOT: from the first token (the prefill's, taken as when the KV landed) to the last.
            if (now - request.arrival_s) / request.decode_tokens > target_s:
                misses += 1
                if misses > allowed:
                    return ProbeResult(False, done, now, energy)
    return ProbeResult(True, done, now, energy)
