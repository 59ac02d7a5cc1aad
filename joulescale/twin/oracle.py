"""The oracle: a lower bound on the energy of every compared policy (docs/twin.md, "The oracle").

Formulation (a relaxation, chosen because it is provably a bound and costs one pass):
over a run, a phase's energy is ``TP x (P_idle x horizon + sum over iterations of
(P(f) - P_idle) x t(f))`` per instance. For each realised iteration, the oracle takes the
clock that minimises its excess energy ``(P(f) - P_idle) x t(f)`` among the allowed clocks,
ignoring the SLO; an iteration whose clock changed part-way is a mix of two clocks and so costs
at least that minimum. Hence the bound of a run is <= that run's energy, and the oracle (the
smallest bound over the compared runs, per phase, at the horizon the runs are measured over)
is <= every policy's energy.
The SLO is dropped, so the gap to the oracle also contains the price of meeting the SLO.

The minimisation uses that the physics stretches the kernels' time by a factor that depends on the
clock and the batch's sensitivity only (docs/physics.md, "Latency"), so the best factor is cached per
sensitivity (prefill) or batch size (decode) and the cost stays linear in the number of iterations.
The step overhead, which no clock stretches (docs/physics.md, "Step overhead"), gets its own
minimum, the busy share's excess power at the best clock; the sum of the two minima is <= the
minimum of the sum, so the bound holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from joulescale.engines.observation import Phase
from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile
from joulescale.twin.simulator import RunResult

_PROBE_CONTEXT_TOKENS = 100_000
_PROBE_SQUARED = 0.0


@dataclass(frozen=True, slots=True)
class OracleBound:
    prefill_j: float
    decode_j: float
    prefill_source: str
    decode_source: str
    """The runs whose realised iterations gave the smallest bound of each phase."""

    @property
    def total_j(self) -> float:
        return self.prefill_j + self.decode_j


class _ExcessFactors:
    """min over clocks of (P(f, B) - P_idle) x t(f) / t(f_max), per phase, sensitivity and batch B."""

    def __init__(self, profile: GpuProfile, clocks_mhz: Sequence[int]) -> None:
        self.profile = profile
        self.clocks_mhz = tuple(clocks_mhz)
        self.f_max = profile.max_sm_clock_mhz
        self._prefill: dict[tuple[Phase, float, int], float] = {}
        self._decode: dict[int, float] = {}

    def _best(self, power_phase: Phase, batch_size: int, latency_s: dict[int, float], at_fmax_s: float) -> float:
        idle = self.profile.idle_power_watts
        return min((physics.busy_power_watts(self.profile, power_phase, f, batch_size) - idle) * latency_s[f]
                   / at_fmax_s for f in self.clocks_mhz)

    def overhead(self, power_phase: Phase, batch_size: int) -> float:
        """min over clocks of the excess power of the step overhead's busy share (W per GPU)."""
        key = (power_phase, -1.0, batch_size)
        cached = self._prefill.get(key)
        if cached is None:
            share = self.profile.step_overhead.gpu_busy_share if self.profile.step_overhead is not None else 0.0
            idle = self.profile.idle_power_watts
            cached = share * min(physics.busy_power_watts(self.profile, power_phase, f, batch_size) - idle
                                 for f in self.clocks_mhz)
            self._prefill[key] = cached
        return cached

    def prefill(self, batch_tokens: int, batch_size: int, power_phase: Phase = "prefill") -> float:
        """Prefill work of ``batch_size`` sequences; ``power_phase`` is decode for a recompute run
        on a decode instance (then ``batch_size`` is the decode batch it runs with)."""
        key = (power_phase, physics.prefill_sensitivity(self.profile, batch_tokens), batch_size)
        cached = self._prefill.get(key)
        if cached is None:
            def latency(f: int) -> float:
                return physics.prefill_gpu_s(self.profile, batch_tokens, _PROBE_SQUARED, f, batch_size, power_phase)
            cached = self._best(power_phase, batch_size, {f: latency(f) for f in self.clocks_mhz}, latency(self.f_max))
            self._prefill[key] = cached
        return cached

    def decode(self, batch_size: int) -> float:
        cached = self._decode.get(batch_size)
        if cached is None:
            lat = {f: physics.decode_gpu_s(self.profile, batch_size, _PROBE_CONTEXT_TOKENS, f)
                   for f in self.clocks_mhz}
            at_fmax = physics.decode_gpu_s(self.profile, batch_size, _PROBE_CONTEXT_TOKENS, self.f_max)
            cached = self._best("decode", batch_size, lat, at_fmax)
            self._decode[batch_size] = cached
        return cached


def run_bound(result: RunResult, clocks_mhz: Sequence[int], horizon_s: float | None = None) -> tuple[float, float]:
    """(prefill J, decode J) lower bound for the iterations ``result`` realised."""
    horizon = result.end_s if horizon_s is None else horizon_s
    factors: dict[str, _ExcessFactors] = {}

    def factors_of(profile: GpuProfile) -> _ExcessFactors:
        if profile.name not in factors:
            factors[profile.name] = _ExcessFactors(profile, clocks_mhz)
        return factors[profile.name]

    prefill = 0.0
    for inst in result.prefill:
        profile = inst.gpu.profile
        f = factors_of(profile)
        tp = profile.tensor_parallel_size
        prefill += physics.idle_energy_j(profile, horizon)
        for tokens, squared, prompts in inst.batch_log:
            t = physics.prefill_gpu_s(profile, tokens, squared, f.f_max, prompts)
            prefill += tp * (f.prefill(tokens, prompts) * t
                             + f.overhead("prefill", prompts) * physics.step_overhead_s(profile, prompts))
    decode = 0.0
    for dec in result.decode:
        profile = dec.gpu.profile
        f = factors_of(profile)
        tp = profile.tensor_parallel_size
        decode += physics.idle_energy_j(profile, horizon)
        for batch, context, recompute, recompute_s2 in dec.iteration_log:
            decode += tp * (f.decode(batch) * physics.decode_gpu_s(profile, batch, context, f.f_max)
                            + f.overhead("decode", batch) * physics.step_overhead_s(profile, batch))
            if recompute:
                t = physics.prefill_gpu_s(profile, recompute, recompute_s2, f.f_max, batch, "decode")
                decode += tp * f.prefill(recompute, batch, "decode") * t
    return prefill, decode


def oracle_bound(runs: dict[str, RunResult], clocks_mhz: Sequence[int],
                 horizon_s: float | None = None) -> OracleBound:
    """Per phase, the smallest bound over the runs, all taken to one horizon.

    ``horizon_s`` must be the horizon the runs' energies are measured over (the comparison's
    common one); by default the shortest run end, which is <= any run's own horizon. Each
    phase's bound is then <= that phase's energy in every run, so their sum is <= every total.
    """
    if not runs:
        raise ValueError("the oracle needs at least one realised run")
    horizon = horizon_s if horizon_s is not None else min(r.end_s for r in runs.values())
    bounds = {name: run_bound(result, clocks_mhz, horizon) for name, result in runs.items()}
    prefill_source = min(bounds, key=lambda name: bounds[name][0])
    decode_source = min(bounds, key=lambda name: bounds[name][1])
    return OracleBound(bounds[prefill_source][0], bounds[decode_source][1], prefill_source, decode_source)
