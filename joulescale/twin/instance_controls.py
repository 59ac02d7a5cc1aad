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

Retime = Callable[[PrefillInstance | DecodeInstance], None]
"""Reschedules the end of an instance's running iteration after its clock request moved it."""


class _Instance:
    """Per-instance control state: the policy, its actuator and the view that feeds it (the
    agent's own observation builder, fed scrapes in the metrics view and the engine hook's
    messages in the rich one)."""

    __slots__ = ("builder", "control")

    def __init__(self, control: InstanceControl, builder: ObservationBuilder) -> None:
        self.control = control
        self.builder = builder


class InstanceControls:
    """The control of every instance of a run, indexed like the run's instance lists."""

    def __init__(self, control: ControlFactory, prefill: list[PrefillInstance], decode: list[DecodeInstance],
                 prefill_kv_tokens: int, retime: Retime) -> None:
        self.prefill = prefill
        self.decode = decode
        self.prefill_kv_tokens = prefill_kv_tokens
        self.retime = retime
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
               now_s: float) -> None:
        """Decide on ``observation`` at ``now_s``; a clock it asks for is requested then."""
        decision = ctl.control.policy.decide(observation)
        self.decisions += 1
        self.reasons[decision.reason.value] += 1
        target = ctl.control.actuator.target_mhz(decision, now_s, inst.gpu.target_mhz)
        if target is not None:
            self.request(inst, now_s, target)

    def request(self, inst: PrefillInstance | DecodeInstance, now_s: float, sm_clock_mhz: int) -> None:
        """Request a clock of the instance's GPU now, retiming its running iteration if it moved."""
        gpu = inst.gpu
        end_s = gpu.end_s
        gpu.request(now_s, sm_clock_mhz)
        if gpu.end_s != end_s:
            self.retime(inst)

    def hook_to_builders(self) -> None:
        """Rich view: every instance publishes the engine hook's messages to its builder."""
        for ctl, prefill in zip(self.prefill_ctl, self.prefill, strict=True):
            prefill.hook = ctl.builder
        for ctl, decode in zip(self.decode_ctl, self.decode, strict=True):
            decode.hook = ctl.builder

    def decide_rich(self, inst: PrefillInstance | DecodeInstance, now_s: float) -> None:
        """Decide on the engine hook's messages so far, as the agent does on reading them, with the
        clock it last requested (the hook does not publish the clock)."""
        if isinstance(inst, PrefillInstance):
            ctl, kv_capacity_tokens = self.prefill_ctl[inst.index], self.prefill_kv_tokens
        else:
            ctl, kv_capacity_tokens = self.decode_ctl[inst.index], inst.model.kv_capacity_tokens
        if not ctl.control.observes:
            return
        gpu = inst.gpu
        gpu.settle(now_s)
        # The agent reads each message as it is published (loopback), so the latest schedule was
        # received when it was published: a step decided ahead, or the silence after a step's end,
        # is older than the decision.
        latest = ctl.builder.hook_latest
        published_s = latest.at_s if latest is not None else None
        self.decide(ctl, inst, ctl.builder.build_rich(now_s, gpu.target_mhz, kv_capacity_tokens, published_s), now_s)

    def scrape(self, phase: str, index: int) -> EngineSample:
        """What a GET /metrics of the instance returns now: its page as the engine published it."""
        return self._pair(phase, index)[1].recorder.sample()

    def _pair(self, phase: str, index: int) -> tuple[_Instance, PrefillInstance | DecodeInstance]:
        if phase == "prefill":
            return self.prefill_ctl[index], self.prefill[index]
        return self.decode_ctl[index], self.decode[index]

    def scrape_visible(self, payload: tuple[str, int, EngineSample], now_s: float) -> None:
        """The agent has parsed a scrape: it builds the observation with the clock it last
        requested (the lock it reports; the GPU may still be settling) and decides."""
        phase, index, sample = payload
        ctl, inst = self._pair(phase, index)
        gpu = inst.gpu
        gpu.settle(now_s)
        self.decide(ctl, inst, ctl.builder.build(sample, now_s, gpu.target_mhz), now_s)

    def first_decision(self, phase: str, index: int, rich: bool) -> bool:
        """Every policy decides once before traffic (the agent applies it when the pod starts).
        True when the instance is then to be scraped: an observing policy under the metrics view."""
        ctl, inst = self._pair(phase, index)
        if rich and ctl.control.observes:
            self.decide_rich(inst, 0.0)
            return False
        sample = inst.recorder.sample()
        self.decide(ctl, inst, ctl.builder.build(sample, 0.0, inst.gpu.target_mhz), 0.0)
        return not rich and ctl.control.observes
