"""The discrete-event loop of a P/D cluster: arrivals, prefill batches, KV transfers, decode steps.

One heap of ``(time, sequence, kind, payload)``; the sequence number breaks ties so a run is
deterministic, and names an iteration's end event: a clock change that settles inside a running
iteration moves its end, so a new event is pushed and the instance's ``end_seq`` marks the old
one stale. Arrivals are read from the sorted request list instead of the heap. Policies
decide at scrape visibility (metrics view) or at iteration boundaries (rich view), never per
token, which keeps the loop at a few events per iteration; their views, decisions and clock
requests live in ``instance_controls``.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from joulescale.engines.dialects import dialect_for
from joulescale.engines.hook import IDLE_AFTER_S
from joulescale.twin.aggregated import AggregatedInstance
from joulescale.twin.cluster import ClusterConfig, ControlFactory
from joulescale.twin.decode import DecodeInstance
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.instance_controls import InstanceControls
from joulescale.twin.kv_transfer import KvLink, kv_medium
from joulescale.twin.prefill import PrefillInstance
from joulescale.twin.request import SimRequest
from joulescale.twin.routing import Routers
from joulescale.twin.traces import TraceRequest

_PREFILL_DONE = 0
_DECODE_DONE = 1
_KV_LANDED = 2
_SCRAPE = 3
_SCRAPE_VISIBLE = 4
_HOOK_SILENT = 5
EXTRA_EVENTS = 16
"""Event kinds from here on are a subclass's own (``DisaggregatedRun.extra_event``)."""


@dataclass(frozen=True, slots=True)
class AbortRule:
    """Stop a run early once the SLO percentile can no longer be met (capacity search): more than
    ``max_violations`` requests over one of the targets."""

    ttft_s: float
    tpot_s: float
    max_violations: int


@dataclass(slots=True)
class RunResult:
    requests: list[SimRequest]
    prefill: list[PrefillInstance]
    decode: list[DecodeInstance]
    end_s: float
    aborted: bool = False
    decisions: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    aggregated: list[AggregatedInstance] = field(default_factory=list)
    """The aggregated topology's instances (the P/D lists are then empty)."""

    @property
    def gpus(self) -> list[SimGpuGroup]:
        return [p.gpu for p in self.prefill] + [d.gpu for d in self.decode] + [a.gpu for a in self.aggregated]


def simulate(
    requests: Sequence[TraceRequest],
    cluster: ClusterConfig,
    control: ControlFactory,
    abort: AbortRule | None = None,
    *,
    record_busy: bool = False,
    scrape_times: Mapping[tuple[str, int], Sequence[float]] | None = None,
    handover_s: Sequence[float] | None = None,
) -> RunResult:
    """Replay ``requests`` (sorted by arrival) through the cluster; deterministic.

    Seams for comparing a run with the real agent's on loopback (tests/agent/differential.py):
    ``record_busy`` keeps every GPU's busy segments (``SimGpuGroup.busy_log``), for energy over
    a window; ``scrape_times`` replaces the periodic scrapes of an instance, keyed ``(phase,
    index)``, by the instants the agent read its page (the scrape phase is the agent's start);
    ``handover_s`` replaces the KV transfer: request ``i`` reaches its decode instance at
    ``handover_s[i]`` (not before its prefill ends)."""
    if cluster.topology == "aggregated":
        from joulescale.twin.aggregated_run import simulate_aggregated  # it builds on this module

        if record_busy or scrape_times is not None or handover_s is not None:
            raise ValueError("the loopback comparison seams exist for the disaggregated topology only")
        return simulate_aggregated(requests, cluster, control, abort)
    run = DisaggregatedRun(requests, cluster, control, abort)
    run.scrape_times = scrape_times
    run.handover_s = handover_s
    if record_busy:
        for gpu in (*(p.gpu for p in run.prefill), *(d.gpu for d in run.decode)):
            gpu.busy_log = []
    return run.run()


class EventQueue:
    """What every twin run's event loop shares: the heap of ``(time, sequence, kind, payload)``,
    the requests finished so far and the abort rule's violation counts."""

    def __init__(self, requests: Sequence[TraceRequest], abort: AbortRule | None) -> None:
        self.abort = abort
        self.requests = [SimRequest(i, r.arrival_s, r.prompt_tokens, r.output_tokens)
                         for i, r in enumerate(requests)]
        self.heap: list[tuple[float, int, int, object]] = []
        self.seq = 0
        self.finished = 0
        self.ttft_violations = 0
        self.tpot_violations = 0
        self.last_s = 0.0

    def push(self, at_s: float, kind: int, payload: object) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at_s, self.seq, kind, payload))

    def complete(self, request: SimRequest) -> None:
        self.finished += 1
        self.last_s = max(self.last_s, request.finish_s)
        rule = self.abort
        if rule is not None:
            self.ttft_violations += request.ttft_s > rule.ttft_s
            self.tpot_violations += request.tpot_s > rule.tpot_s


class DisaggregatedRun(EventQueue):
    def __init__(self, requests: Sequence[TraceRequest], cluster: ClusterConfig, control: ControlFactory,
                 abort: AbortRule | None) -> None:
        profile = cluster.profile
        prefill_profile = cluster.profile_of("prefill")
        super().__init__(requests, abort)
        self.cluster = cluster
        dialect = dialect_for(cluster.engine)
        self.prefill = [PrefillInstance(i, SimGpuGroup(prefill_profile, "prefill", prefill_profile.max_sm_clock_mhz,
                                                       cluster.settle_s("prefill")),
                                        cluster.prefill_token_budget, dialect) for i in range(cluster.prefill_instances)]
        self.decode = [DecodeInstance(i, SimGpuGroup(profile, "decode", profile.max_sm_clock_mhz,
                                                     cluster.settle_s("decode")),
                                      profile.kv_capacity_tokens, cluster.decode_max_running, cluster.kv_watermark,
                                      dialect)
                       for i in range(cluster.decode_instances)]
        self.controls = InstanceControls(control, self.prefill, self.decode, prefill_profile.kv_capacity_tokens,
                                         self.retime)
        medium = kv_medium(cluster.kv_medium)
        self.links = [KvLink(medium, prefill_profile.kv_bytes_per_token) for _ in self.prefill]
        self.routers = Routers(cluster.prefill_router, cluster.decode_router)
        self.rich = cluster.view == "rich"
        if self.rich:
            self.controls.hook_to_builders()
        self.scrape_times: Mapping[tuple[str, int], Sequence[float]] | None = None
        self.handover_s: Sequence[float] | None = None

    def retime(self, inst: PrefillInstance | DecodeInstance) -> None:
        """A clock request moved the running iteration's end: push the new end, stale the old."""
        self.push(inst.gpu.end_s, _PREFILL_DONE if isinstance(inst, PrefillInstance) else _DECODE_DONE, inst)
        inst.end_seq = self.seq

    def route_prefill(self, prompt_tokens: int) -> PrefillInstance:
        """The prefill instance a new request goes to (a run with changing replicas routes among
        the serving ones only)."""
        return self.prefill[self.routers.prefill(self.prefill, prompt_tokens)]

    def route_decode(self) -> DecodeInstance:
        return self.decode[self.routers.decode(self.decode)]

    def extra_event(self, kind: int, payload: object, now_s: float) -> None:
        """An event of a kind at or above ``EXTRA_EVENTS`` (a subclass's own)."""
        raise ValueError(f"unknown event kind {kind}")

    # --- phases ------------------------------------------------------------------------------
    def start_prefill(self, inst: PrefillInstance, now_s: float) -> None:
        """Schedule and run the next step when there is one; the engine hook decides either way."""
        published = inst.hook_step
        started = inst.start_step(now_s)
        if self.rich:
            self.hook_decision(inst, inst.hook_step != published, now_s)
        if started:
            self.push(now_s + inst.run_step(now_s), _PREFILL_DONE, inst)
            inst.end_seq = self.seq

    def prefill_done(self, inst: PrefillInstance, now_s: float) -> None:
        link = self.links[inst.index]
        for request in inst.finish_step(now_s):
            request.prefill_done_s = now_s
            target = self.route_decode()
            target.incoming += 1
            landed_s = link.send(now_s, request.prompt_tokens)
            if self.handover_s is not None:
                landed_s = max(now_s, self.handover_s[request.request_id])
            self.push(landed_s, _KV_LANDED, (request, target))
        self.start_prefill(inst, now_s)

    def hook_decision(self, inst: PrefillInstance | DecodeInstance, scheduled: bool, now_s: float) -> None:
        """Rich view: the agent decides on reading a scheduling call; an engine that scheduled
        nothing now (idle, or starting a step it published ahead with nothing after it) publishes
        nothing, so the agent decides on the silence ``IDLE_AFTER_S`` after the step's end, unless
        a new step was scheduled by then."""
        if scheduled:
            self.controls.decide_rich(inst, now_s)
        else:
            self.push(now_s + IDLE_AFTER_S, _HOOK_SILENT, (inst, inst.hook_step))

    def kv_landed(self, request: SimRequest, inst: DecodeInstance, now_s: float) -> None:
        inst.incoming -= 1
        request.first_token_s = now_s
        if request.output_tokens <= 1:
            request.finish_s = now_s
            self.complete(request)
            return
        inst.enqueue(request, now_s)
        if not inst.busy:
            self.start_decode(inst, now_s)

    def start_decode(self, inst: DecodeInstance, now_s: float) -> None:
        published = inst.hook_step
        started = inst.start_step(now_s)
        if self.rich:
            self.hook_decision(inst, inst.hook_step != published, now_s)
        if not started:
            return
        self.push(now_s + inst.run_step(now_s), _DECODE_DONE, inst)
        inst.end_seq = self.seq

    def scrape(self, phase_index: tuple[str, int], now_s: float) -> None:
        phase, index = phase_index
        sample = self.controls.scrape(phase, index)
        self.push(now_s + self.cluster.scrape_delay_s, _SCRAPE_VISIBLE, (phase, index, sample))
        if self.scrape_times is None and self.finished < len(self.requests):
            self.push(now_s + self.cluster.scrape_period_s, _SCRAPE, phase_index)

    def schedule_scrape(self, phase_index: tuple[str, int], at_s: float) -> None:
        """The agent scrapes the instance at ``at_s``, then every period."""
        self.push(at_s, _SCRAPE, phase_index)

    # --- loop --------------------------------------------------------------------------------
    def start(self) -> None:
        """Observing policies are fed scrapes (metrics view), staggered over one period so the
        instances are not all seen at once, or iteration boundaries (rich)."""
        names = [("prefill", i) for i in range(len(self.prefill))] + [("decode", i) for i in range(len(self.decode))]
        period = self.cluster.scrape_period_s
        for k, (phase, index) in enumerate(names):
            if self.controls.first_decision(phase, index, self.rich):
                if self.scrape_times is None:
                    self.push(period * k / len(names), _SCRAPE, (phase, index))
                    continue
                for at_s in self.scrape_times.get((phase, index), ()):
                    if at_s >= 0.0:
                        self.push(at_s, _SCRAPE, (phase, index))

    def run(self) -> RunResult:
        self.start()
        requests = self.requests
        total = len(requests)
        heap = self.heap
        pop = heapq.heappop
        rule = self.abort
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
                inst = self.route_prefill(request.prompt_tokens)
                inst.enqueue(request, now_s)
                if not inst.busy:
                    self.start_prefill(inst, now_s)
                continue
            now_s, seq, kind, payload = pop(heap)
            if kind == _DECODE_DONE:
                assert isinstance(payload, DecodeInstance)
                if seq != payload.end_seq:
                    continue  # the step was retimed; a newer event ends it
                for request in payload.finish_step(now_s):
                    self.complete(request)
                self.start_decode(payload, now_s)
            elif kind == _SCRAPE_VISIBLE:
                self.controls.scrape_visible(payload, now_s)  # type: ignore[arg-type]
            elif kind == _SCRAPE:
                self.scrape(payload, now_s)  # type: ignore[arg-type]
            elif kind == _HOOK_SILENT:
                silent: tuple[PrefillInstance | DecodeInstance, int] = payload  # type: ignore[assignment]
                if silent[0].hook_step == silent[1]:
                    self.controls.decide_rich(silent[0], now_s)
            elif kind == _PREFILL_DONE:
                assert isinstance(payload, PrefillInstance)
                if seq != payload.end_seq:
                    continue
                self.prefill_done(payload, now_s)
            elif kind >= EXTRA_EVENTS:
                self.extra_event(kind, payload, now_s)
            else:
                landed: tuple[SimRequest, DecodeInstance] = payload  # type: ignore[assignment]
                self.kv_landed(landed[0], landed[1], now_s)
        end_s = max(self.last_s, requests[-1].arrival_s if requests else 0.0)
        for gpu in (*(p.gpu for p in self.prefill), *(d.gpu for d in self.decode)):
            gpu.settle(end_s)  # a clock that settled during the last iteration shows in the trace
        return self.result(end_s, aborted)

    def result(self, end_s: float, aborted: bool) -> RunResult:
        return RunResult(self.requests, self.prefill, self.decode, end_s, aborted, self.controls.decisions,
                         self.controls.reasons)
