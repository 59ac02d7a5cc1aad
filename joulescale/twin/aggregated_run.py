"""The discrete-event loop of an aggregated cluster: arrivals, mixed steps, scrapes.

The same heap discipline as the P/D loop (``simulator``): ``(time, sequence, kind, payload)``,
an instance's ``end_seq`` naming its live step-end event so a retimed step's old end is skipped.
A request is routed on arrival (the cluster's decode router, on requests held), gets its first
token with the step that computes its last prompt chunk (no KV transfer) and finishes with its
last decode step. Policies see the metrics view: each scrape of an instance's page is built
into one observation per phase by the agent's own builder, and the instance's
``AggregatedPolicy`` applies the stricter decision (``joulescale.control.aggregated``).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence

from joulescale.control.aggregated import AggregatedPolicy
from joulescale.engines.dialects import dialect_for
from joulescale.engines.observe import ObservationBuilder
from joulescale.engines.sample import EngineSample
from joulescale.twin.aggregated import AggregatedInstance
from joulescale.twin.cluster import ClusterConfig, ControlFactory, InstanceControl
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.routing import Routers
from joulescale.twin.simulator import AbortRule, EventQueue, RunResult
from joulescale.twin.traces import TraceRequest

_STEP_DONE = 0
_SCRAPE = 1
_SCRAPE_VISIBLE = 2


class _Control:
    """One instance's policy and actuator, and the agent's builders for both phases' views."""

    __slots__ = ("control", "decode_view", "prefill_view")

    def __init__(self, control: InstanceControl) -> None:
        if not isinstance(control.policy, AggregatedPolicy):
            raise TypeError("an aggregated instance needs the controller built with role='aggregated'")
        self.control = control
        self.prefill_view = ObservationBuilder("prefill", colocated=True)
        self.decode_view = ObservationBuilder("decode")


def simulate_aggregated(requests: Sequence[TraceRequest], cluster: ClusterConfig, control: ControlFactory,
                        abort: AbortRule | None = None) -> RunResult:
    """Replay ``requests`` (sorted by arrival) through an aggregated cluster; deterministic."""
    if cluster.view != "metrics":
        raise ValueError("the aggregated topology runs the metrics view only (the engine hook is P/D's)")
    return _AggregatedRun(requests, cluster, control, abort).run()


class _AggregatedRun(EventQueue):
    def __init__(self, requests: Sequence[TraceRequest], cluster: ClusterConfig, control: ControlFactory,
                 abort: AbortRule | None) -> None:
        profile = cluster.profile
        super().__init__(requests, abort)
        self.cluster = cluster
        dialect = dialect_for(cluster.engine)
        self.instances = [
            AggregatedInstance(i, SimGpuGroup(profile, "decode", profile.max_sm_clock_mhz, cluster.settle_s("decode")),
                               cluster.prefill_token_budget, profile.kv_capacity_tokens, cluster.decode_max_running,
                               cluster.kv_watermark, dialect)
            for i in range(cluster.aggregated_instances)]
        self.controls = [_Control(control("aggregated", i)) for i in range(len(self.instances))]
        self.routers = Routers(cluster.prefill_router, cluster.decode_router)
        self.decisions = 0
        self.reasons: Counter[str] = Counter()

    def start_step(self, inst: AggregatedInstance, now_s: float) -> None:
        if inst.start_step(now_s):
            self.push(now_s + inst.run_step(now_s), _STEP_DONE, inst)
            inst.end_seq = self.seq

    def decide(self, index: int, sample: EngineSample, now_s: float) -> None:
        """The agent parsed a scrape: both phases' observations, the stricter decision, the clock."""
        ctl = self.controls[index]
        inst = self.instances[index]
        gpu = inst.gpu
        gpu.settle(now_s)
        policy = ctl.control.policy
        assert isinstance(policy, AggregatedPolicy)
        decision = policy.decide_pair(ctl.prefill_view.build(sample, now_s, gpu.target_mhz),
                                      ctl.decode_view.build(sample, now_s, gpu.target_mhz))
        self.decisions += 1
        self.reasons[decision.reason.value] += 1
        target = ctl.control.actuator.target_mhz(decision, now_s, gpu.target_mhz)
        if target is not None:
            end_s = gpu.end_s
            gpu.request(now_s, target)
            if gpu.end_s != end_s:
                self.push(gpu.end_s, _STEP_DONE, inst)
                inst.end_seq = self.seq

    def start(self) -> None:
        """Every policy decides once before traffic; observing ones are then scraped, staggered."""
        period = self.cluster.scrape_period_s
        for index, inst in enumerate(self.instances):
            self.decide(index, inst.recorder.sample(), 0.0)
            if self.controls[index].control.observes:
                self.push(period * index / len(self.instances), _SCRAPE, index)

    def run(self) -> RunResult:
        self.start()
        requests = self.requests
        total = len(requests)
        heap = self.heap
        pop = heapq.heappop
        rule = self.abort
        instances = self.instances
        route = self.routers.decode
        next_arrival = 0
        aborted = False
        while self.finished < total:
            if rule is not None and max(self.ttft_violations, self.tpot_violations) > rule.max_violations:
                aborted = True
                break
            if next_arrival < total and (not heap or requests[next_arrival].arrival_s < heap[0][0]):
                request = requests[next_arrival]
                next_arrival += 1
                now_s = request.arrival_s
                inst = instances[route(instances)]  # type: ignore[arg-type]
                inst.enqueue(request, now_s)
                if not inst.busy:
                    self.start_step(inst, now_s)
                continue
            now_s, seq, kind, payload = pop(heap)
            if kind == _STEP_DONE:
                assert isinstance(payload, AggregatedInstance)
                if seq != payload.end_seq:
                    continue  # the step was retimed; a newer event ends it
                done, _ = payload.finish_step(now_s)
                for request in done:
                    self.complete(request)
                self.start_step(payload, now_s)
            elif kind == _SCRAPE:
                index: int = payload  # type: ignore[assignment]
                sample = instances[index].recorder.sample()
                self.push(now_s + self.cluster.scrape_delay_s, _SCRAPE_VISIBLE, (index, sample))
                if self.finished < total:
                    self.push(now_s + self.cluster.scrape_period_s, _SCRAPE, index)
            else:
                seen: tuple[int, EngineSample] = payload  # type: ignore[assignment]
                self.decide(seen[0], seen[1], now_s)
        end_s = max(self.last_s, requests[-1].arrival_s if requests else 0.0)
        for inst in instances:
            inst.gpu.settle(end_s)
        return RunResult(self.requests, [], [], end_s, aborted, self.decisions, self.reasons, aggregated=instances)
