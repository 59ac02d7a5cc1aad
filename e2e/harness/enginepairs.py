"""Pairs of simulated engines (prefill + decode) on loopback, and the workload the loopback
end-to-end tests replay through them: one pair controlled one way, the other another way."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from joulescale.profiles import physics
from joulescale.profiles.model import GpuProfile
from joulescale.twin.traces import TraceRequest, load_trace, scaled_window
from joulescale_agent.gpu.simulated import SimulatedBackend


@dataclass
class EnginePair:
    name: str
    sim_dir: Path
    ports: dict[str, int]
    """Role -> the engine's loopback port."""
    gpus: SimulatedBackend
    uuids: tuple[str, ...]
    """The simulated GPUs this pair's engines run on."""

    def url(self, role: str) -> str:
        return f"http://127.0.0.1:{self.ports[role]}"

    def energy_j(self) -> float:
        return sum(self.gpus.energy_mj(uuid) for uuid in self.uuids) / 1000.0


def light_then_heavy(light_s: float, heavy_s: float, max_prompt: int = 4096, max_output: int = 128) -> list[TraceRequest]:
    """``light_s`` of the Azure conversation trace at 0.3x its rate, then ``heavy_s`` at 6x, with
    lengths capped so one Llama-8B TP1 instance per role can serve them."""
    trace = load_trace("azure-conv")
    light = scaled_window(trace, 0.3, light_s, start_s=600.0)
    heavy = [replace(r, arrival_s=r.arrival_s + light_s) for r in scaled_window(trace, 6.0, heavy_s, start_s=900.0)]
    return [
        replace(r, prompt_tokens=min(r.prompt_tokens, max_prompt), output_tokens=min(r.output_tokens, max_output))
        for r in [*light, *heavy]
    ]


def attainment(values: list[float], slo_s: float) -> float:
    """The share of ``values`` within ``slo_s``."""
    return sum(v <= slo_s for v in values) / len(values)


LIGHT_BATCH, HEAVY_BATCH = 8, 32
"""Sequences in decode in the light phase (0.3x the trace's rate) and in the heavy one (6x), to
the nearest power of two, with one Llama-8B TP1 decode instance."""


def tpot_between_phases_s(profile: GpuProfile, requests: list[TraceRequest]) -> float:
    """A TPOT SLO that the light phase meets at the lowest clock and the heavy phase only above
    it: the mean of the two phases' decode step times at the lowest clock, at the requests' mean
    context. Derived from the profile (its kernels and step overhead), so that the tests keep
    their meaning when the physics changes; refused if even the top clock misses it."""
    context = statistics.fmean(r.prompt_tokens for r in requests) + statistics.fmean(
        r.output_tokens for r in requests) / 2

    def step_s(batch: int, clock_mhz: float) -> float:
        return physics.decode_latency_s(profile, batch, round(batch * context), clock_mhz)

    lowest, top = min(profile.supported_sm_clocks_mhz), max(profile.supported_sm_clocks_mhz)
    slo_s = (step_s(LIGHT_BATCH, lowest) + step_s(HEAVY_BATCH, lowest)) / 2
    if step_s(HEAVY_BATCH, top) >= slo_s:
        raise ValueError(f"{profile.name}: the heavy phase misses a {slo_s * 1000:.1f} ms TPOT even at the top clock")
    return slo_s
