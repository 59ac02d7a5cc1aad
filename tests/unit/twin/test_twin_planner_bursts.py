"""The planner in the twin's loop on bursty traffic: bursts recur after quiet intervals faster
than a replica starts, so the capacity a burst needs must be running when the next one arrives.

A small synthetic trace (0.3 req/s, with a minute at 4 req/s every 8 minutes), a 60 s planner
interval and a 60 s start-up, the tables of ``ProportionalSource`` at f_max (a TP4 prefill
instance carries 2 req/s): the serving prefill capacity is sampled every 5 s from the replicas'
tenures.
"""

from __future__ import annotations

from collections.abc import Sequence

from joulescale.control.policy import Slo
from joulescale.planning import Allocation, Candidate, CandidateTable, LengthMix, Planner, PlannerSettings
from joulescale.planning import Placement as PlannedPlacement
from joulescale.twin.cluster import ClusterConfig
from joulescale.twin.elastic import ElasticResult, simulate_elastic
from joulescale.twin.planned_compare import base_clock_control
from joulescale.twin.planner_loop import PlannerScaler, target_of
from joulescale.twin.traces import TraceRequest

from .test_twin_planner_loop import TP4, ProportionalSource

SLO = Slo(ttft_ms=600.0, tpot_ms=100.0, percentile=99)
BURST_RPS, QUIET_RPS, BURSTS_AT = 4.0, 0.3, (120.0, 600.0, 1080.0)
PREFILL_PER_GPU = 0.5  # ProportionalSource at f_max


class FmaxSource(ProportionalSource):
    def candidates(self) -> Sequence[Candidate]:
        return [c for c in super().candidates()
                if c.base_clock_mhz == self.profiles[c.profile].max_sm_clock_mhz]

    def tables(self, mix: LengthMix, slo: Slo) -> list[CandidateTable]:
        wanted = set(self.candidates())
        return [t for t in super().tables(mix, slo) if t.candidate in wanted]


def bursty() -> list[TraceRequest]:
    arrivals: list[float] = []
    t = 0.0
    while t < 1500.0:
        in_burst = any(b <= t < b + 60.0 for b in BURSTS_AT)
        arrivals.append(t)
        t += 1.0 / (BURST_RPS if in_burst else QUIET_RPS)
    return [TraceRequest(a, 600 + (i * 97) % 900, 20 + (i * 13) % 60) for i, a in enumerate(arrivals)]


def run(memory_s: float) -> ElasticResult:
    source = FmaxSource(names=(TP4,))
    profile = source.profiles[TP4]
    start = PlannedPlacement.of([Allocation(c, 1) for c in source.candidates()])
    settings = PlannerSettings(SLO, {profile.gpu_product: 16}, interval_s=60.0, startup_s=60.0, memory_s=memory_s)
    cluster = ClusterConfig(profile, 1, 1)
    first = target_of(start)[0]
    return simulate_elastic(bursty(), cluster, base_clock_control("static-max", cluster, SLO),
                            PlannerScaler(Planner(settings, source), start), 60.0,
                            {"prefill": first.prefill_base_mhz, "decode": first.decode_base_mhz}, gpu_budget=16)


def serving_prefill_rps(result: ElasticResult, at_s: float) -> float:
    gpus = sum(t.gpus for t in result.tenures if t.phase == "prefill" and t.ready_s <= at_s
               and (t.drain_s is None or t.drain_s > at_s))
    return gpus * PREFILL_PER_GPU


def test_after_the_first_burst_the_serving_capacity_never_falls_below_what_a_burst_needs() -> None:
    result = run(memory_s=1800.0)
    after_first = BURSTS_AT[0] + 60.0 + 60.0 + 60.0  # observed at the next tick, then one start-up
    samples = [after_first + 5.0 * k for k in range(int((BURSTS_AT[-1] + 60.0 - after_first) / 5.0))]
    short = [t for t in samples if serving_prefill_rps(result, t) < BURST_RPS]
    assert not short, f"prefill capacity below {BURST_RPS} req/s at {short[:5]}"
    # The same loop without the memory plans from the interval's mean and lets the burst find it short.
    forgetful = run(memory_s=0.0)
    assert any(serving_prefill_rps(forgetful, b + 1.0) < BURST_RPS for b in BURSTS_AT[1:])
