"""A P/D twin run whose replica counts and base clocks change while it runs (the coarse tier).

Every ``Scaler.interval_s`` the scaler is shown what was observed so far (``ObservedTraffic``:
arrivals and their prompt lengths, the output lengths of finished requests; what Prometheus holds)
and may return a ``Target``. The run applies it as a cluster would:

- a new replica holds its GPUs at once but serves only after ``startup_s`` (pod scheduling and
  model load); meanwhile it draws idle power and is never routed to;
- a removed replica drains: it takes no new request, finishes what it holds (a prefill replica
  also sends its KV caches), and then gives its GPUs back; a replica still starting is given
  back at once;
- a new base clock per role reaches every replica of that role by rebuilding its policy, as the
  agent does when the plan in the service's status changes.

Energy counts the GPUs while the service holds them (``held_energy``); GPU-seconds given back are
reported apart, with the idle energy they would have drawn, which is not a saving unless the
cluster powers them down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from joulescale.control.controller import Role
from joulescale.engines.dialects import dialect_for
from joulescale.engines.observation import Phase
from joulescale.profiles import profile_by_name_or_path
from joulescale.profiles.model import GpuProfile
from joulescale.twin.cluster import ClusterConfig, InstanceControl
from joulescale.twin.decode import DecodeInstance
from joulescale.twin.gpu import SimGpuGroup
from joulescale.twin.held_energy import HeldEnergy, held_energy
from joulescale.twin.kv_transfer import KvLink, kv_medium
from joulescale.twin.prefill import PrefillInstance
from joulescale.twin.request import SimRequest
from joulescale.twin.scaling import ObservedTraffic, Placement, Scaler, ScheduledScaler, Target, Tenure
from joulescale.twin.simulator import EXTRA_EVENTS, DisaggregatedRun, RunResult
from joulescale.twin.traces import TraceRequest

__all__ = ["BaseClockControl", "ElasticResult", "ElasticRun", "HeldEnergy", "ObservedTraffic", "Placement", "Scaler",
           "ScheduledScaler", "Target", "Tenure", "held_energy", "simulate_elastic"]

_READY = EXTRA_EVENTS
_PLAN = EXTRA_EVENTS + 1

BaseClockControl = Callable[[Role, GpuProfile, int | None], InstanceControl]
"""Builds one instance's control from its role, its profile and the role's planned base clock
(None: the policy's own default, the top allowed clock)."""


@dataclass(slots=True)
class ElasticResult(RunResult):
    tenures: list[Tenure] = field(default_factory=list)
    plans: list[tuple[float, Target]] = field(default_factory=list)
    """The targets applied, with when."""


class ElasticRun(DisaggregatedRun):
    """A disaggregated run (``DisaggregatedRun``) under a ``Scaler``; the metrics view only, as
    in production, where the planner and the agents read Prometheus and /metrics."""

    def __init__(self, requests: Sequence[TraceRequest], cluster: ClusterConfig, control: BaseClockControl,
                 scaler: Scaler, startup_s: float, base_mhz: Mapping[Phase, int | None] | None = None,
                 record_busy: bool = False, profiles: Callable[[str], GpuProfile] | None = None,
                 gpu_budget: int | None = None) -> None:
        if cluster.topology != "disaggregated" or cluster.view != "metrics":
            raise ValueError("replica changes are simulated for the disaggregated topology in the metrics view")
        if startup_s < 0 or scaler.interval_s <= 0:
            raise ValueError("startup_s must be non-negative and the planner interval positive")
        self.base: dict[Phase, int | None] = {"prefill": None, "decode": None}
        if base_mhz is not None:
            self.base.update(base_mhz)
        self._control_for = control
        super().__init__(requests, cluster,
                         lambda role, i: control(role, cluster.profile_of(_phase(role)), self.base[_phase(role)]), None)
        self.scaler = scaler
        self.startup_s = startup_s
        self.record_busy = record_busy
        self.tenures: dict[tuple[Phase, int], Tenure] = {}
        every: list[PrefillInstance | DecodeInstance] = [*self.prefill, *self.decode]
        for inst in every:
            if record_busy:
                inst.gpu.busy_log = []
            phase = inst.gpu.phase
            self.tenures[(phase, inst.index)] = Tenure(phase, inst.index, inst.gpu.profile.tensor_parallel_size,
                                                       0.0, 0.0, inst.gpu.profile.name)
        self.serving_prefill: list[PrefillInstance] = list(self.prefill)
        self.serving_decode: list[DecodeInstance] = list(self.decode)
        self.finished_log: list[tuple[float, int]] = []
        self.plans: list[tuple[float, Target]] = []
        self.wanted: dict[Phase, int] = {"prefill": len(self.prefill), "decode": len(self.decode)}
        self.pending: dict[Phase, int] = {"prefill": 0, "decode": 0}
        """Replicas ordered but waiting for GPUs under the budget (Pending pods: no GPU, no power)."""
        self.gpu_budget = gpu_budget
        self._medium = kv_medium(cluster.kv_medium)
        self._dialect = dialect_for(cluster.engine)
        self._profiles = profiles if profiles is not None else profile_by_name_or_path
        self.role_profile: dict[Phase, str] = {"prefill": cluster.profile_of("prefill").name,
                                               "decode": cluster.profile.name}
        """The profile new replicas of each role get (the latest target's)."""

    # --- routing and completion ---------------------------------------------------------------
    def route_prefill(self, prompt_tokens: int) -> PrefillInstance:
        serving = self.serving_prefill
        return serving[self.routers.prefill(serving, prompt_tokens)]

    def route_decode(self) -> DecodeInstance:
        serving = self.serving_decode
        return serving[self.routers.decode(serving)]

    def complete(self, request: SimRequest) -> None:
        super().complete(request)
        self.finished_log.append((request.finish_s, request.output_tokens))

    # --- drain: release a replica once it holds nothing ---------------------------------------
    def start_prefill(self, inst: PrefillInstance, now_s: float) -> None:
        super().start_prefill(inst, now_s)
        self._release_if_drained("prefill", inst, now_s)

    def start_decode(self, inst: DecodeInstance, now_s: float) -> None:
        super().start_decode(inst, now_s)
        self._release_if_drained("decode", inst, now_s)

    def kv_landed(self, request: SimRequest, inst: DecodeInstance, now_s: float) -> None:
        super().kv_landed(request, inst, now_s)
        self._release_if_drained("decode", inst, now_s)

    def _release_if_drained(self, phase: Phase, inst: PrefillInstance | DecodeInstance, now_s: float) -> None:
        tenure = self.tenures[(phase, inst.index)]
        if tenure.drain_s is None or tenure.released_s is not None or inst.busy:
            return
        if isinstance(inst, PrefillInstance):
            if inst.model.has_work:
                return
            tenure.released_s = max(now_s, self.links[inst.index].busy_until_s)  # its KV caches sent
        else:
            if inst.load:
                return
            tenure.released_s = now_s
        self._start_pending(tenure.released_s)

    def scrape(self, phase_index: tuple[str, int], now_s: float) -> None:
        phase, index = phase_index
        if self.tenures[(phase, index)].released_s is not None:  # type: ignore[index]
            return  # the pod is gone: nothing to scrape, no more scrapes
        super().scrape(phase_index, now_s)

    # --- the planner's ticks -----------------------------------------------------------------
    def start(self) -> None:
        super().start()
        self.push(0.0, _PLAN, None)

    def extra_event(self, kind: int, payload: object, now_s: float) -> None:
        if kind == _PLAN:
            self.plan_tick(now_s)
        elif kind == _READY:
            assert isinstance(payload, (PrefillInstance, DecodeInstance))
            self.ready(payload, now_s)
        else:
            super().extra_event(kind, payload, now_s)

    def placement(self, now_s: float) -> Placement:
        counts: dict[str, dict[Phase, int]] = {k: {"prefill": 0, "decode": 0} for k in ("serving", "starting", "draining")}
        for tenure in self.tenures.values():
            if tenure.released_s is not None:
                continue
            state = "draining" if tenure.drain_s is not None else "serving" if tenure.ready_s <= now_s else "starting"
            counts[state][tenure.phase] += 1
        for phase in ("prefill", "decode"):
            counts["starting"][phase] += self.pending[phase]
        return Placement(counts["serving"], counts["starting"], counts["draining"], dict(self.base))

    def plan_tick(self, now_s: float) -> None:
        target = self.scaler.target(ObservedTraffic(self.requests, self.finished_log, now_s), self.placement(now_s))
        if target is not None:
            self.apply(target, now_s)
        if self.finished < len(self.requests):
            self.push(now_s + self.scaler.interval_s, _PLAN, None)

    def apply(self, target: Target, now_s: float) -> None:
        """Move the cluster towards ``target``: base clocks first (the running replicas' policies
        are rebuilt), then replica counts."""
        changed = False
        for phase in ("prefill", "decode"):
            wanted = target.base_mhz(phase)
            if wanted != self.base[phase]:
                self.base[phase] = wanted
                changed = True
                for tenure in self.tenures.values():
                    if tenure.phase == phase and tenure.released_s is None and tenure.ready_s <= now_s:
                        self.controls.rebuild(phase, tenure.index, self._control(phase, tenure.index), now_s)
            profile = target.profile(phase) or self.role_profile[phase]
            if profile != self.role_profile[phase]:
                self.role_profile[phase] = profile
                changed = True
            changed = self._resize(phase, target.replicas(phase), now_s) or changed
        if changed:
            self.plans.append((now_s, target))

    def _control(self, phase: Phase, index: int) -> InstanceControl:
        """A replica's control as the agent builds it now: its profile, the role's base clock."""
        inst = self.prefill[index] if phase == "prefill" else self.decode[index]
        return self._control_for(phase, inst.gpu.profile, self.base[phase])

    def _active(self, phase: Phase, same_profile: bool = True) -> list[Tenure]:
        """Replicas serving or starting (not draining), of the role's current profile or of others."""
        wanted = self.role_profile[phase]
        return [t for t in self.tenures.values()
                if t.phase == phase and t.released_s is None and t.drain_s is None
                and (t.profile == wanted) == same_profile]

    def _resize(self, phase: Phase, count: int, now_s: float) -> bool:
        """Replicas of the role's profile up or down to ``count``: pending ones count, and are
        cancelled first. Replicas of another profile (the plan changed TP) keep serving until
        enough new ones are ready, or leave earlier to make room under the GPU budget."""
        self.wanted[phase] = count
        active = self._active(phase)
        have = len(active) + self.pending[phase]
        changed = count != have
        if count > have:
            self.pending[phase] += count - have
        elif count < have:
            cancelled = min(have - count, self.pending[phase])
            self.pending[phase] -= cancelled
            surplus = have - count - cancelled

            def holding(t: Tenure) -> tuple[int, float]:  # starting ones first, then the least loaded
                inst = self.prefill[t.index] if phase == "prefill" else self.decode[t.index]
                load = inst.queued_tokens if isinstance(inst, PrefillInstance) else inst.load
                return (0 if t.ready_s > now_s else 1, load)
            for tenure in sorted(active, key=holding)[:surplus]:
                self._drain(tenure, now_s)
        self._start_pending(now_s)
        self._retire_other_profiles(phase, now_s)
        return changed

    def _held_gpus(self, at_s: float) -> int:
        """GPUs held at ``at_s`` or later: every replica not given back by then."""
        return sum(t.gpus for t in self.tenures.values() if t.released_s is None or t.released_s > at_s)

    def _start_pending(self, at_s: float) -> None:
        """Start the pending replicas the GPU budget has room for at ``at_s`` (a pod waits, Pending,
        until GPUs are free)."""
        for phase in ("prefill", "decode"):
            while self.pending[phase]:
                gpus = self._profiles(self.role_profile[phase]).tensor_parallel_size
                if self.gpu_budget is not None and self._held_gpus(at_s) + gpus > self.gpu_budget:
                    break
                self.pending[phase] -= 1
                self._add(phase, at_s)

    def _retire_other_profiles(self, phase: Phase, now_s: float) -> None:
        """Drain the replicas of a former profile once the current one serves the wanted count;
        while new ones wait for GPUs, drain former ones to make room, never the role's last serving
        replica before a new one serves."""
        others = self._active(phase, same_profile=False)
        if not others:
            return
        serving = sum(1 for t in self._active(phase) if t.ready_s <= now_s)
        if serving >= self.wanted[phase]:
            for tenure in others:
                self._drain(tenure, now_s)
            return
        if not self.pending[phase] or self.gpu_budget is None:
            return
        need = self.pending[phase] * self._profiles(self.role_profile[phase]).tensor_parallel_size
        freeing = sum(t.gpus for t in self.tenures.values() if t.drain_s is not None and t.released_s is None)
        room = self.gpu_budget - self._held_gpus(now_s) + freeing
        for tenure in sorted(others, key=lambda t: (0 if t.ready_s > now_s else 1, t.index), reverse=False):
            if room >= need:
                break
            if serving == 0 and tenure.ready_s <= now_s and sum(
                    1 for t in others if t.ready_s <= now_s and t.drain_s is None) <= 1:
                break  # the role's last serving replica stays until a new one serves
            self._drain(tenure, now_s)
            room += tenure.gpus

    def _add(self, phase: Phase, now_s: float) -> None:
        cluster = self.cluster
        profile = self._profiles(self.role_profile[phase])
        gpu = SimGpuGroup(profile, phase, profile.max_sm_clock_mhz, cluster.settle_s(phase))
        if self.record_busy:
            gpu.busy_log = []
        inst: PrefillInstance | DecodeInstance
        if phase == "prefill":
            inst = PrefillInstance(len(self.prefill), gpu, cluster.prefill_token_budget, self._dialect)
            self.prefill.append(inst)
            self.links.append(KvLink(self._medium, profile.kv_bytes_per_token))
        else:
            inst = DecodeInstance(len(self.decode), gpu, profile.kv_capacity_tokens, cluster.decode_max_running,
                                  cluster.kv_watermark, self._dialect)
            self.decode.append(inst)
        self.controls.add(inst, self._control(phase, inst.index))
        ready_s = now_s + self.startup_s
        self.tenures[(phase, inst.index)] = Tenure(phase, inst.index, profile.tensor_parallel_size, now_s, ready_s,
                                                   profile.name)
        self.push(ready_s, _READY, inst)

    def ready(self, inst: PrefillInstance | DecodeInstance, now_s: float) -> None:
        """The replica's engine is up: the agent applies its policy, the router may pick it."""
        phase: Phase = "prefill" if isinstance(inst, PrefillInstance) else "decode"
        if self.tenures[(phase, inst.index)].released_s is not None:
            return  # scaled down again while starting
        if isinstance(inst, PrefillInstance):
            self.serving_prefill.append(inst)
        else:
            self.serving_decode.append(inst)
        self.controls.rebuild(phase, inst.index, self._control(phase, inst.index), now_s)
        if self.controls.observes(phase, inst.index):
            self.schedule_scrape((phase, inst.index), now_s)
        self._retire_other_profiles(phase, now_s)

    def _drain(self, tenure: Tenure, now_s: float) -> None:
        tenure.drain_s = now_s
        if tenure.ready_s > now_s:
            tenure.released_s = now_s
            self._start_pending(now_s)
            return
        if tenure.phase == "prefill":
            inst_p = self.prefill[tenure.index]
            self.serving_prefill.remove(inst_p)
            self._release_if_drained("prefill", inst_p, now_s)
        else:
            inst_d = self.decode[tenure.index]
            self.serving_decode.remove(inst_d)
            self._release_if_drained("decode", inst_d, now_s)

    def result(self, end_s: float, aborted: bool) -> ElasticResult:
        return ElasticResult(self.requests, self.prefill, self.decode, end_s, aborted, self.controls.decisions,
                             self.controls.reasons, tenures=sorted(self.tenures.values(),
                                                                   key=lambda t: (t.phase, t.index)),
                             plans=list(self.plans))


def _phase(role: Role) -> Phase:
    if role == "aggregated":
        raise ValueError("replica changes are simulated for the disaggregated topology only")
    return role


def simulate_elastic(requests: Sequence[TraceRequest], cluster: ClusterConfig, control: BaseClockControl,
                     scaler: Scaler, startup_s: float, base_mhz: Mapping[Phase, int | None] | None = None, *,
                     record_busy: bool = False, profiles: Callable[[str], GpuProfile] | None = None,
                     gpu_budget: int | None = None) -> ElasticResult:
    """Replay ``requests`` through ``cluster`` (its counts are the starting placement, ``base_mhz``
    the starting base clocks) under ``scaler``;
    ``record_busy`` keeps every GPU's busy segments (``SimGpuGroup.busy_log``); ``profiles`` looks a
    planned profile up by name (default: shipped profiles and profile files); ``gpu_budget``: GPUs
    the service may hold at once (None: no limit); a replica that does not fit waits."""
    result = ElasticRun(requests, cluster, control, scaler, startup_s, base_mhz, record_busy, profiles,
                        gpu_budget).run()
    assert isinstance(result, ElasticResult)
    return result
