"""Each instance's policy, the views that feed it and the clock requests that follow its decisions.

Kept apart from the event loop so the loop only orders events: this side turns an observation
into a clock request and counts decisions, and hands a moved iteration end back through
``retime`` because only the loop owns the event queue and its sequence numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from joulescale.engines.observation import Observation, Phase
from joulescale.engines.observe import ObservationBuilder
from joulescale.engines.sample import EngineSample
from joulescale.twin.cluster import ControlFactory, InstanceControl
from joulescale.twin.decode import DecodeInstance
from joulescale.twin.prefill import PrefillInstance
from joulescale.twin.views import RichView

Retime = Callable[[PrefillInstance | DecodeInstance], None]
"""Reschedules the end of an instance's running iteration after its clock request moved it."""
Defer = Callable[[PrefillInstance | DecodeInstance, float, int], None]
"""Requests a decided clock at a later instant (``InstanceControls.request`` then)."""


class _Instance:
    """Per-instance control state: the policy, its actuator and the view that feeds it (the
    agent's own observation builder in the metrics view, the engine hook in the rich one)."""

    __slots__ = ("builder", "control", "rich_view")

    def __init__(self, control: InstanceControl, builder: ObservationBuilder) -> None:
        self.control = control
        self.builder = builder
        self.rich_view = RichView()


class InstanceControls:
    """The control of every instance of a run, indexed like the run's instance lists."""

    def __init__(self, control: ControlFactory, prefill: list[PrefillInstance], decode: list[DecodeInstance],
                 prefill_kv_tokens: int, retime: Retime, defer: Defer | None = None) -> None:
        self.prefill = prefill
        self.decode = decode
        self.prefill_kv_tokens = prefill_kv_tokens
        self.retime = retime
        self.defer = defer
        self.prefill_ctl = [_Instance(control("prefill", i), ObservationBuilder("prefill"))
                            for i in range(len(prefill))]
        self.decode_ctl = [_Instance(control("decode", i), ObservationBuilder("decode"))
                           for i in range(len(decode))]
        self.decisions = 0
        self.reasons: Counter[str] = Counter()

    def add(self, inst: PrefillInstance | DecodeInstance, control: InstanceControl) -> None:
        """Control a replica started during the run (its index is the next of its phase's list)."""
        phase: Phase = "prefill" if isinstance(inst, PrefillInstance) else "decode"
        controls = self.prefill_ctl if phase == "prefill" else self.decode_ctl
        if inst.index != len(controls):
            raise ValueError(f"{phase} replica {inst.index} added out of order")
        controls.append(_Instance(control, ObservationBuilder(phase)))

    def observes(self, phase: str, index: int) -> bool:
        return self._pair(phase, index)[0].control.observes

    def rebuild(self, phase: str, index: int, control: InstanceControl, now_s: float) -> None:
        """A new plan reached the instance (another base clock): its policy is rebuilt and the
        observation builder kept, as the agent's ``InstanceLoop.update_policy`` does; the new
        policy decides at once on the page as it stands."""
        ctl, inst = self._pair(phase, index)
        ctl.control = control
        inst.gpu.settle(now_s)
        self.decide(ctl, inst, ctl.builder.build(inst.recorder.sample(), now_s, inst.gpu.target_mhz), now_s)

    def decide(self, ctl: _Instance, inst: PrefillInstance | DecodeInstance, observation: Observation,
               now_s: float, request_s: float | None = None) -> None:
        """Decide on ``observation`` at ``now_s``; a clock it asks for is requested then, or at
        ``request_s`` through the ``defer`` hook (a replay of the agent, whose lock is written a
        little after it observed)."""
        decision = ctl.control.policy.decide(observation)
        self.decisions += 1
        self.reasons[decision.reason.value] += 1
        target = ctl.control.actuator.target_mhz(decision, now_s, inst.gpu.target_mhz)
        if target is None:
            return
        if request_s is not None and request_s > now_s and self.defer is not None:
            self.defer(inst, request_s, target)
        else:
            self.request(inst, now_s, target)

    def request(self, inst: PrefillInstance | DecodeInstance, now_s: float, sm_clock_mhz: int) -> None:
        """Request a clock of the instance's GPU now, retiming its running iteration if it moved."""
        gpu = inst.gpu
        end_s = gpu.end_s
        gpu.request(now_s, sm_clock_mhz)
        if gpu.end_s != end_s:
            self.retime(inst)

    def decide_prefill_rich(self, inst: PrefillInstance, now_s: float) -> None:
        ctl = self.prefill_ctl[inst.index]
        if not ctl.control.observes:
            return
        inst.gpu.settle(now_s)  # the hook reads the clock in force now, not one already replaced
        obs = ctl.rich_view.observe_prefill(inst, now_s, self.prefill_kv_tokens)
        self.decide(ctl, inst, obs, now_s)

    def decide_decode_rich(self, inst: DecodeInstance, now_s: float) -> None:
        ctl = self.decode_ctl[inst.index]
        if not ctl.control.observes:
            return
        inst.gpu.settle(now_s)
        self.decide(ctl, inst, ctl.rich_view.observe_decode(inst, now_s), now_s)

    def scrape(self, phase: str, index: int) -> EngineSample:
        """What a GET /metrics of the instance returns now: its page as the engine published it."""
        return self._pair(phase, index)[1].recorder.sample()

    def _pair(self, phase: str, index: int) -> tuple[_Instance, PrefillInstance | DecodeInstance]:
        if phase == "prefill":
            return self.prefill_ctl[index], self.prefill[index]
        return self.decode_ctl[index], self.decode[index]

    def scrape_visible(self, payload: tuple[str, int, EngineSample], now_s: float,
                       request_s: float | None = None) -> None:
        """The agent has parsed a scrape: it builds the observation with the clock it last
        requested (the lock it reports; the GPU may still be settling) and decides; a clock it
        asks for is requested at ``request_s`` when given (see ``decide``)."""
        phase, index, sample = payload
        ctl, inst = self._pair(phase, index)
        gpu = inst.gpu
        gpu.settle(now_s)
        self.decide(ctl, inst, ctl.builder.build(sample, now_s, gpu.target_mhz), now_s, request_s)

    def first_decision(self, phase: str, index: int, rich: bool) -> bool:
        """Every policy decides once before traffic (the agent applies it when the pod starts).
        True when the instance is then to be scraped: an observing policy under the metrics view."""
        ctl, inst = self._pair(phase, index)
        if rich and ctl.control.observes:
            if phase == "prefill":
                self.decide_prefill_rich(self.prefill[index], 0.0)
            else:
                self.decide_decode_rich(self.decode[index], 0.0)
            return False
        sample = inst.recorder.sample()
        self.decide(ctl, inst, ctl.builder.build(sample, 0.0, inst.gpu.target_mhz), 0.0)
        return not rich and ctl.control.observes
