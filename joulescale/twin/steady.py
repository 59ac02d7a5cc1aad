"""``joulescale twin steady``: ML.ENERGY's measurement made in the twin.

One aggregated instance (the core's ``AggregatedModel``: vLLM V1's scheduler, prefill chunks and
decodes sharing each step's token budget) is kept full: ``max_num_seqs`` requests are always in
it, and when one finishes the next of the length mix takes its place (a closed loop at fixed
concurrency, as a benchmark client with that many requests in flight). The first requests all
start together, so the run is measured only after a warm-up of completions has mixed their
phases; from then on, energy, time and output tokens are counted over a window of completions.
The instance runs at one fixed clock (f_max by default, as ML.ENERGY's runs), so a step's energy
is exactly TP x its power x its latency (``physics.step_power_watts``); the twin's
``SimGpuGroup`` would add nothing without clock changes.

Length mix: ``lmarena-chat`` by default, the lengths of ML.ENERGY's own task
(``joulescale.twin.arena_lengths``), since the measurement is ML.ENERGY's; or the prompt and output
lengths of a trace's requests in trace order, cycled (``azure-conv``: Azure's production
conversation service; its arrival times are not used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.engines.model import AggregatedModel
from joulescale.engines.model.request import EngineRequest
from joulescale.profiles.model import GpuProfile
from joulescale.twin import arena_lengths
from joulescale.twin.traces import load_trace

DEFAULT_MIX = arena_lengths.NAME
KV_WATERMARK = 0.01
"""vLLM's default share of the KV cache kept free at admission (as the twin's clusters)."""
MAX_STEPS = 10_000_000
"""A run that has not completed its window by then is refused (a request that can never fit)."""


@dataclass(frozen=True, slots=True)
class SteadySettings:
    profile: GpuProfile
    max_num_seqs: int
    clock_mhz: int | None = None
    """None: the profile's f_max."""
    mix: str = DEFAULT_MIX
    token_budget: int = DEFAULT_TOKEN_BUDGET
    warmup_completions: int | None = None
    """None: 2 x max_num_seqs + 200, enough for the first, synchronised batch to have turned over twice."""
    measured_completions: int | None = None
    """None: 4 x max_num_seqs + 1000."""


@dataclass(frozen=True, slots=True)
class SteadyResult:
    profile: str
    topology: str
    max_num_seqs: int
    clock_mhz: int
    mix: str
    window_s: float
    output_tokens: int
    completed_requests: int
    energy_j: float
    """All GPUs of the instance over the window (always busy: no idle time)."""
    mean_batch: float
    """Time-weighted sequences per step over the window."""
    tensor_parallel_size: int
    median_itl_s: float
    """Median inter-token latency over the window: the median step duration, each step counted
    once per decode token it produced (ML.ENERGY's leaderboard publishes this median)."""

    @property
    def joules_per_output_token(self) -> float:
        return self.energy_j / self.output_tokens

    @property
    def watts_per_gpu(self) -> float:
        return self.energy_j / self.window_s / self.tensor_parallel_size

    @property
    def output_tokens_per_second(self) -> float:
        return self.output_tokens / self.window_s

    def to_json(self) -> dict[str, Any]:
        return {
            "joules_per_output_token": self.joules_per_output_token,
            "watts_per_gpu": self.watts_per_gpu,
            "output_tokens_per_second": self.output_tokens_per_second,
            "profile": self.profile,
            "topology": self.topology,
            "max_num_seqs": self.max_num_seqs,
            "clock_mhz": self.clock_mhz,
            "length_mix": self.mix,
            "window_s": self.window_s,
            "output_tokens": self.output_tokens,
            "completed_requests": self.completed_requests,
            "mean_batch": self.mean_batch,
            "median_itl_ms": self.median_itl_s * 1000.0,
        }

    def text(self) -> str:
        return (f"steady state: {self.profile}, {self.topology}, max_num_seqs {self.max_num_seqs}, "
                f"{self.clock_mhz} MHz, lengths of {self.mix}; window {self.window_s:.1f} s, "
                f"{self.completed_requests} requests, mean batch {self.mean_batch:.1f}, "
                f"median inter-token latency {self.median_itl_s * 1000.0:.1f} ms\n"
                f"J per output token    {self.joules_per_output_token:.3f}\n"
                f"W per GPU             {self.watts_per_gpu:.0f}\n"
                f"output tokens per s   {self.output_tokens_per_second:.0f}")


class _LengthMix:
    """(prompt, output) lengths in order, cycled; requests that can never fit the cache are skipped."""

    def __init__(self, trace_name: str, kv_capacity_tokens: int) -> None:
        every = arena_lengths.lengths() if trace_name == arena_lengths.NAME else \
            tuple((r.prompt_tokens, r.output_tokens) for r in load_trace(trace_name).requests)
        self._lengths = tuple((prompt, output) for prompt, output in every
                              if prompt + output <= kv_capacity_tokens)
        if not self._lengths:
            raise ValueError(f"no request of {trace_name} fits the KV cache")
        self._next = 0

    def request(self, request_id: int, now_s: float) -> EngineRequest:
        prompt, output = self._lengths[self._next % len(self._lengths)]
        self._next += 1
        return EngineRequest(request_id, now_s, prompt, output)


def weighted_median(values: list[tuple[float, int]]) -> float:
    """The median of values each counted ``weight`` times (0.0 for none)."""
    total = sum(weight for _, weight in values)
    seen = 0
    for value, weight in sorted(values):
        seen += weight
        if 2 * seen >= total:
            return value
    return 0.0


def measure_steady(settings: SteadySettings) -> SteadyResult:
    """Run the closed loop and measure its steady-state window (module docstring)."""
    profile = settings.profile
    n = settings.max_num_seqs
    if n < 1:
        raise ValueError("max_num_seqs must be positive")
    if n > settings.token_budget:
        raise ValueError(f"max_num_seqs {n} exceeds the token budget {settings.token_budget} (vLLM refuses it too)")
    clock = profile.max_sm_clock_mhz if settings.clock_mhz is None else settings.clock_mhz
    if clock not in profile.supported_sm_clocks_mhz:
        raise ValueError(f"clock {clock} MHz is not a supported clock of {profile.name}")
    warmup = settings.warmup_completions if settings.warmup_completions is not None else 2 * n + 200
    measured = settings.measured_completions if settings.measured_completions is not None else 4 * n + 1000
    mix = _LengthMix(settings.mix, profile.kv_capacity_tokens)
    model: AggregatedModel[EngineRequest] = AggregatedModel(profile, settings.token_budget,
                                                            profile.kv_capacity_tokens, n, KV_WATERMARK)
    tp = profile.tensor_parallel_size
    now = energy = batch_time = 0.0
    tokens = completed = 0
    for request_id in range(n):
        model.enqueue(mix.request(request_id, now), now)
    next_id = n
    start: tuple[float, float, int, float] | None = None  # time, energy, tokens, batch x time
    itl: list[tuple[float, int]] = []  # (step duration, decode tokens) over the window
    for _ in range(MAX_STEPS):
        if start is None and completed >= warmup:
            start = (now, energy, tokens, batch_time)
        if start is not None and completed >= warmup + measured:
            window_s = now - start[0]
            return SteadyResult(
                profile=profile.name, topology="aggregated", max_num_seqs=n, clock_mhz=clock, mix=settings.mix,
                window_s=window_s, output_tokens=tokens - start[2], completed_requests=measured,
                energy_j=energy - start[1], mean_batch=(batch_time - start[3]) / window_s,
                tensor_parallel_size=tp, median_itl_s=weighted_median(itl))
        if not model.start_step(now):
            raise ValueError("the instance ran out of work")  # a closed loop never does
        step_s = model.step_latency_s(clock)
        energy += tp * model.step_power_watts(clock) * step_s
        batch_time += model.running * step_s
        now += step_s
        decodes = model.step_batch
        if start is not None and decodes:
            itl.append((step_s, decodes))
        done = model.finish_step(now, step_s)
        tokens += decodes + len(model.prefilled)
        completed += len(done)
        for _ in done:
            model.enqueue(mix.request(next_id, now), now)
            next_id += 1
    raise ValueError(f"no steady state within {MAX_STEPS} steps")
