"""Summaries of one run: energy per phase, latency at the SLO percentile, SLO attainment.

Energy of a phase = the busy energy of its iterations + the idle power of its GPUs for the rest
of the horizon. A run ends at ``max(last arrival, last completion)``; a comparison measures every
policy over the same horizon (the latest end among its runs), so the GPUs are powered for the
same wall-clock time whichever policy drains last, and the tail's busy energy is counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from joulescale.control.policy import Slo
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.simulator import RunResult


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default), NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class PhaseEnergy:
    busy_j: float
    idle_j: float

    @property
    def total_j(self) -> float:
        return self.busy_j + self.idle_j


def phase_energy(gpus: Sequence[SimGpuGroup], horizon_s: float) -> PhaseEnergy:
    return PhaseEnergy(sum(g.busy_energy_j for g in gpus), sum(g.idle_energy_j(horizon_s) for g in gpus))


@dataclass(frozen=True, slots=True)
class RunSummary:
    requests: int
    finished: int
    output_tokens: int
    duration_s: float
    prefill: PhaseEnergy
    decode: PhaseEnergy
    ttft_ms_at_percentile: float
    tpot_ms_at_percentile: float
    ttft_attainment: float
    tpot_attainment: float
    slo_attainment: float
    clock_changes_per_second: float
    preemptions: int
    time_at_clock_s: dict[str, dict[int, float]]

    @property
    def total_j(self) -> float:
        return self.prefill.total_j + self.decode.total_j

    @property
    def joules_per_output_token(self) -> float:
        return self.total_j / self.output_tokens if self.output_tokens else math.nan

    def to_json(self) -> dict[str, object]:
        return {
            "energy_j": {"prefill": self.prefill.total_j, "decode": self.decode.total_j, "total": self.total_j},
            "busy_energy_j": {"prefill": self.prefill.busy_j, "decode": self.decode.busy_j},
            "idle_energy_j": {"prefill": self.prefill.idle_j, "decode": self.decode.idle_j},
            "joules_per_output_token": self.joules_per_output_token,
            "joules_per_output_token_by_phase": {
                "prefill": self.prefill.total_j / self.output_tokens if self.output_tokens else math.nan,
                "decode": self.decode.total_j / self.output_tokens if self.output_tokens else math.nan,
            },
            "ttft_ms_at_percentile": self.ttft_ms_at_percentile,
            "tpot_ms_at_percentile": self.tpot_ms_at_percentile,
            "ttft_attainment": self.ttft_attainment,
            "tpot_attainment": self.tpot_attainment,
            "slo_attainment": self.slo_attainment,
            "clock_changes_per_second": self.clock_changes_per_second,
            "preemptions": self.preemptions,
            "requests": self.requests,
            "output_tokens": self.output_tokens,
            "duration_s": self.duration_s,
            "time_at_clock_s": {phase: {str(k): v for k, v in sorted(clocks.items())}
                                for phase, clocks in self.time_at_clock_s.items()},
        }


def _time_at_clock(gpus: Sequence[SimGpuGroup]) -> dict[int, float]:
    out: dict[int, float] = {}
    for gpu in gpus:
        for mhz, seconds in gpu.time_at_clock_s.items():
            out[mhz] = out.get(mhz, 0.0) + seconds
    return out


def _aggregated_energy(result: RunResult, horizon_s: float) -> tuple[PhaseEnergy, PhaseEnergy]:
    """An aggregated run's energy by phase: each step's busy energy split by its parts
    (``twin.aggregated``); the shared GPUs' idle energy is booked to decode."""
    busy_j = sum(a.gpu.busy_energy_j for a in result.aggregated)
    prefill_j = min(busy_j, sum(a.prefill_busy_j for a in result.aggregated))
    idle_j = sum(a.gpu.idle_energy_j(horizon_s) for a in result.aggregated)
    return PhaseEnergy(prefill_j, 0.0), PhaseEnergy(busy_j - prefill_j, idle_j)


def summarise(result: RunResult, slo: Slo, horizon_s: float | None = None) -> RunSummary:
    """``horizon_s`` (at least the run's end) sets the interval energy is measured over."""
    finished = [r for r in result.requests if r.finish_s >= 0]
    ttft_ms = [r.ttft_s * 1000.0 for r in finished]
    tpot_ms = [r.tpot_s * 1000.0 for r in finished if r.output_tokens > 1]
    total = len(result.requests)
    ttft_ok = sum(1 for r in finished if r.ttft_s * 1000.0 <= slo.ttft_ms)
    tpot_ok = sum(1 for r in finished if r.tpot_s * 1000.0 <= slo.tpot_ms)
    both_ok = sum(1 for r in finished if r.ttft_s * 1000.0 <= slo.ttft_ms and r.tpot_s * 1000.0 <= slo.tpot_ms)
    horizon = max(result.end_s, horizon_s or 0.0)
    prefill_gpus = [p.gpu for p in result.prefill]
    decode_gpus = [d.gpu for d in result.decode]
    if result.aggregated:
        prefill, decode = _aggregated_energy(result, horizon)
    else:
        prefill, decode = phase_energy(prefill_gpus, horizon), phase_energy(decode_gpus, horizon)
    changes = sum(g.clock_changes for g in result.gpus)
    return RunSummary(
        requests=total,
        finished=len(finished),
        output_tokens=sum(r.output_tokens for r in finished),
        duration_s=horizon,
        prefill=prefill,
        decode=decode,
        ttft_ms_at_percentile=percentile(ttft_ms, slo.percentile),
        tpot_ms_at_percentile=percentile(tpot_ms, slo.percentile),
        ttft_attainment=ttft_ok / total if total else math.nan,
        tpot_attainment=tpot_ok / total if total else math.nan,
        slo_attainment=both_ok / total if total else math.nan,
        clock_changes_per_second=changes / horizon / len(result.gpus) if horizon > 0 else 0.0,
        preemptions=(sum(d.recorder.preemptions for d in result.decode)
                     + sum(a.recorder.preemptions for a in result.aggregated)),
        time_at_clock_s={"prefill": _time_at_clock(prefill_gpus), "decode": _time_at_clock(decode_gpus),
                         **({"aggregated": _time_at_clock([a.gpu for a in result.aggregated])}
                            if result.aggregated else {})},
    )


def meets_slo(summary: RunSummary, slo: Slo) -> bool:
    """Both latencies at the SLO percentile within their targets, and every request served.

    A latency no request has (NaN: no request at all, or none longer than one token for TPOT)
    misses nothing."""
    return (summary.finished == summary.requests
            and _within(summary.ttft_ms_at_percentile, slo.ttft_ms)
            and _within(summary.tpot_ms_at_percentile, slo.tpot_ms))


def _within(latency_ms: float, target_ms: float) -> bool:
    return math.isnan(latency_ms) or latency_ms <= target_ms
