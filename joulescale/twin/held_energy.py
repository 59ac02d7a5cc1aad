"""The energy of the GPUs a service holds, and the GPU-seconds it gives back to the cluster."""

from __future__ import annotations

import math
from dataclasses import dataclass

from joulescale.engines.observation import Phase
from joulescale.profiles import physics
from joulescale.twin.decode import DecodeInstance
from joulescale.twin.metrics import PhaseEnergy
from joulescale.twin.prefill import PrefillInstance
from joulescale.twin.scaling import Tenure
from joulescale.twin.simulator import RunResult


@dataclass(frozen=True, slots=True)
class HeldEnergy:
    """Energy of the GPUs while the service held them, and what it gave back."""

    prefill: PhaseEnergy
    decode: PhaseEnergy
    gpu_seconds_held: float
    gpu_seconds_given_back: float
    """``gpu_budget`` x horizon less the GPU-seconds held: GPUs the cluster had back."""
    given_back_idle_j: float
    """What the given-back GPU-seconds would draw idling; not subtracted from anything (a saving
    only if the cluster powers those GPUs down or gives them other work)."""

    def to_json(self) -> dict[str, float]:
        return {"gpu_seconds_held": self.gpu_seconds_held, "gpu_seconds_given_back": self.gpu_seconds_given_back,
                "given_back_idle_energy_j": self.given_back_idle_j}


def held_energy(result: RunResult, horizon_s: float, gpu_budget: int) -> HeldEnergy:
    """Per phase: busy energy + idle power over each replica's held time less its busy time.
    A run without replica changes (a plain ``RunResult``) holds every replica all along."""
    horizon = max(result.end_s, horizon_s)
    every: list[PrefillInstance | DecodeInstance] = [*result.prefill, *result.decode]
    tenures = getattr(result, "tenures", None) or [
        Tenure(inst.gpu.phase, inst.index, inst.gpu.profile.tensor_parallel_size, 0.0, 0.0) for inst in every]
    parts: dict[Phase, list[float]] = {"prefill": [0.0, 0.0], "decode": [0.0, 0.0]}
    held_gpu_s = 0.0
    idle_watts_per_gpu = math.nan
    for tenure in tenures:
        gpu = (result.prefill if tenure.phase == "prefill" else result.decode)[tenure.index].gpu
        held_s = tenure.held_until(horizon) - tenure.held_s
        parts[tenure.phase][0] += gpu.busy_energy_j
        parts[tenure.phase][1] += physics.idle_energy_j(gpu.profile, max(0.0, held_s - gpu.busy_s))
        held_gpu_s += tenure.gpus * held_s
        idle_watts_per_gpu = physics.idle_energy_j(gpu.profile, 1.0) / tenure.gpus
    given_back = max(0.0, gpu_budget * horizon - held_gpu_s)
    return HeldEnergy(PhaseEnergy(*parts["prefill"]), PhaseEnergy(*parts["decode"]), held_gpu_s, given_back,
                      given_back * (0.0 if math.isnan(idle_watts_per_gpu) else idle_watts_per_gpu))
