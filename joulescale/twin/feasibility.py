"""The SLO a trace can meet: the latencies the cluster reaches at f_max, and why a target is missed.

The floor of a cluster's latency on a trace is each request served alone at the top clock: no
queue, no batch, the prefill chunked under the token budget, the KV cache sent over an idle link.
No rate meets an SLO tighter than the floor's percentile, and more GPUs cannot lower it; a faster
prefill instance (a wider TP), another token budget or serving without the KV transfer can. The
floor is measured by the simulator itself, on the trace's own prompts, with static-max's control:
the requests are replayed far enough apart that none waits for another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from joulescale.control.policy import ClockBounds, Slo
from joulescale.control.registry import reference_variant
from joulescale.profiles.catalog import shipped_catalog
from joulescale.profiles.model import GpuProfile
from joulescale.twin.cluster import ClusterConfig
from joulescale.twin.metrics import percentile
from joulescale.twin.policies import policy_run_setup
from joulescale.twin.request import SimRequest
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import TraceRequest

AUTO_HEADROOM = 0.2
"""``--slo-ttft-ms auto`` sets the target 20 % above the latency static-max reaches: room for the
load a cluster runs at and for clocks below f_max, without which no policy has anything to save."""
_ALONE_GAP_S = 3600.0
"""Gap between requests replayed alone; doubled until no request is still served at the next arrival."""
_BUDGET_FACTORS = (0.5, 2.0, 4.0)
"""Token budgets tried as a remedy, as multiples of the run's budget."""


@dataclass(frozen=True, slots=True)
class Latencies:
    """Per-request latencies (ms) of one run, in request order, and their percentile."""

    prompt_tokens: tuple[int, ...]
    ttft_ms: tuple[float, ...]
    tpot_ms: tuple[float, ...]
    """NaN for a one-token answer (it has no time per output token)."""
    kv_transfer_ms: tuple[float, ...]
    percentile: int

    @property
    def ttft_ms_at_percentile(self) -> float:
        return percentile(self.ttft_ms, self.percentile)

    @property
    def tpot_ms_at_percentile(self) -> float:
        return percentile([t for t in self.tpot_ms if not math.isnan(t)], self.percentile)


def _latencies(requests: list[SimRequest], pct: int) -> Latencies:
    return Latencies(tuple(r.prompt_tokens for r in requests), tuple(r.ttft_s * 1000.0 for r in requests),
                     tuple(r.tpot_s * 1000.0 if r.output_tokens > 1 else math.nan for r in requests),
                     tuple((r.first_token_s - r.prefill_done_s) * 1000.0 for r in requests), pct)


def at_fmax(requests: list[TraceRequest], cluster: ClusterConfig, slo: Slo, bounds: ClockBounds | None) -> Latencies:
    """Latencies of static-max (the top allowed clock) replaying ``requests`` as they arrive."""
    setup = policy_run_setup(reference_variant(), replace(cluster, view="metrics"), slo, bounds)
    return _latencies(simulate(requests, setup.cluster, setup.control).requests, slo.percentile)


def alone(requests: list[TraceRequest], cluster: ClusterConfig, slo: Slo, bounds: ClockBounds | None) -> Latencies:
    """Each request served alone at the top clock: the floor no rate and no number of GPUs beats."""
    gap_s = _ALONE_GAP_S
    while True:
        spaced = [TraceRequest(i * gap_s, r.prompt_tokens, r.output_tokens) for i, r in enumerate(requests)]
        setup = policy_run_setup(reference_variant(), replace(cluster, view="metrics"), slo, bounds)
        served = simulate(spaced, setup.cluster, setup.control).requests
        if all(r.finish_s - r.arrival_s < gap_s for r in served) or gap_s > 1e9:
            return _latencies(served, slo.percentile)
        gap_s *= 2.0


def auto_ms(latency_ms: float) -> float:
    """The tightest target with ``AUTO_HEADROOM`` over a latency, rounded up to a whole ms."""
    return float(math.ceil(latency_ms * (1.0 + AUTO_HEADROOM)))


@dataclass(frozen=True, slots=True)
class Binding:
    """The requests that miss a target even alone: how many, and their prompt lengths."""

    requests: int
    share: float
    shortest_prompt_tokens: int
    longest_prompt_tokens: int
    kv_transfer_ms_at_shortest: float

    def to_json(self) -> dict[str, object]:
        return {"requests": self.requests, "share": self.share, "shortest_prompt_tokens": self.shortest_prompt_tokens,
                "longest_prompt_tokens": self.longest_prompt_tokens,
                "kv_transfer_ms_at_shortest": self.kv_transfer_ms_at_shortest}


def _binding(floor: Latencies, values: tuple[float, ...], target_ms: float) -> Binding | None:
    over = [i for i, v in enumerate(values) if v > target_ms]
    if not over:
        return None
    shortest = min(over, key=lambda i: floor.prompt_tokens[i])
    return Binding(len(over), len(over) / len(values), floor.prompt_tokens[shortest],
                   max(floor.prompt_tokens[i] for i in over), floor.kv_transfer_ms[shortest])


@dataclass(frozen=True, slots=True)
class Remedy:
    """One thing that could help, with what the twin measured of it (None: not measurable here)."""

    name: str
    how: str
    ttft_ms_at_percentile: float | None
    helps: bool | None

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "how": self.how, "ttft_ms_at_percentile": self.ttft_ms_at_percentile,
                "helps": self.helps}


@dataclass(frozen=True, slots=True)
class Feasibility:
    """Why no rate meets the SLO on this trace, and what would."""

    slo: Slo
    requests: int
    floor: Latencies
    ttft_binding: Binding | None
    tpot_binding: Binding | None
    remedies: tuple[Remedy, ...]

    @property
    def floor_meets_slo(self) -> bool:
        return self.floor.ttft_ms_at_percentile <= self.slo.ttft_ms and not \
            self.floor.tpot_ms_at_percentile > self.slo.tpot_ms

    def to_json(self) -> dict[str, object]:
        return {
            "slo": {"ttft_ms": self.slo.ttft_ms, "tpot_ms": self.slo.tpot_ms, "percentile": self.slo.percentile},
            "requests": self.requests,
            "ttft_ms_at_percentile_alone_at_fmax": self.floor.ttft_ms_at_percentile,
            "tpot_ms_at_percentile_alone_at_fmax": self.floor.tpot_ms_at_percentile,
            "auto_slo": {"ttft_ms": auto_ms(self.floor.ttft_ms_at_percentile),
                         "tpot_ms": auto_ms(self.floor.tpot_ms_at_percentile)},
            "ttft_binding": None if self.ttft_binding is None else self.ttft_binding.to_json(),
            "tpot_binding": None if self.tpot_binding is None else self.tpot_binding.to_json(),
            "remedies": [r.to_json() for r in self.remedies],
        }

    def text(self) -> str:
        p, slo, floor = self.slo.percentile, self.slo, self.floor
        lines = [f"No rate meets the SLO (P{p} TTFT {slo.ttft_ms:g} ms / TPOT {slo.tpot_ms:g} ms) on this trace.",
                 f"At f_max, each of {self.requests} requests of the trace served alone: P{p} TTFT "
                 f"{floor.ttft_ms_at_percentile:.0f} ms, P{p} TPOT {floor.tpot_ms_at_percentile:.1f} ms; this is "
                 "the floor, no rate and no number of GPUs goes below it."]
        for what, binding in (("TTFT", self.ttft_binding), ("TPOT", self.tpot_binding)):
            if binding is not None:
                lines.append(
                    f"Binding ({what}): {binding.requests} requests ({binding.share * 100:.1f} %) miss it even alone, "
                    f"prompts of {binding.shortest_prompt_tokens}-{binding.longest_prompt_tokens} tokens"
                    + (f" (the KV transfer is {binding.kv_transfer_ms_at_shortest:.0f} ms of the shortest's TTFT)"
                       if what == "TTFT" else ""))
        if self.floor_meets_slo:
            lines.append("Alone, requests meet it: the misses come from queueing and batching at every rate tried.")
        lines.append("What would help:")
        for remedy in self.remedies:
            measured = "" if remedy.ttft_ms_at_percentile is None else \
                f": P{p} TTFT alone {remedy.ttft_ms_at_percentile:.0f} ms"
            verdict = {True: ": helps", False: ": not enough", None: ""}[remedy.helps]
            lines.append(f"  - {remedy.name} ({remedy.how}){measured}{verdict}")
        lines.append(f"  - or the tightest SLO the cluster meets with {AUTO_HEADROOM * 100:.0f} % headroom: "
                     f"--slo-ttft-ms auto ({auto_ms(floor.ttft_ms_at_percentile):.0f} ms)"
                     + (f" --slo-tpot-ms auto ({auto_ms(floor.tpot_ms_at_percentile):.0f} ms)"
                        if self.tpot_binding is not None else ""))
        return "\n".join(lines)


def wider_prefill_profiles(prefill: GpuProfile) -> list[GpuProfile]:
    """Shipped profiles of the same GPU and model at a wider TP: faster prefill per prompt."""
    return sorted((p for p in shipped_catalog().profiles if p.gpu_product == prefill.gpu_product
                   and p.model == prefill.model and p.tensor_parallel_size > prefill.tensor_parallel_size),
                  key=lambda p: p.tensor_parallel_size)


def to_aggregated(cluster: ClusterConfig) -> ClusterConfig:
    """The aggregated cluster of ``cluster``'s GPUs and decode profile (``--topology aggregated``)."""
    return replace(cluster, topology="aggregated", prefill_instances=0, decode_instances=0, prefill_profile=None,
                   aggregated_instances=max(1, cluster.gpus // cluster.profile.tensor_parallel_size))


def explain(requests: list[TraceRequest], cluster: ClusterConfig, slo: Slo, bounds: ClockBounds | None,
            floor: Latencies | None = None) -> Feasibility:
    """The floor of ``requests`` on ``cluster``, the prompts that bind, and each remedy measured."""
    floor = floor or alone(requests, cluster, slo, bounds)

    def meets(ttft_ms: float) -> bool:
        return ttft_ms <= slo.ttft_ms

    remedies: list[Remedy] = []
    aggregated = cluster.topology == "aggregated"
    if not aggregated:  # an aggregated instance has no prefill profile of its own
        for wider in wider_prefill_profiles(cluster.profile_of("prefill")):
            ttft = alone(requests, replace(cluster, prefill_profile=wider), slo, bounds).ttft_ms_at_percentile
            remedies.append(Remedy(f"a TP{wider.tensor_parallel_size} prefill profile",
                                   f"--prefill-profile {wider.name}", ttft, meets(ttft)))
        if not wider_prefill_profiles(cluster.profile_of("prefill")):
            remedies.append(Remedy("a wider-TP prefill profile", "none is shipped for this GPU and model; "
                                   "measure one (docs/profiles.md)", None, None))
    best: tuple[float, int] | None = None
    for factor in _BUDGET_FACTORS:
        budget = max(1, int(cluster.prefill_token_budget * factor))
        if aggregated:  # one step holds every running decode
            budget = max(budget, cluster.decode_max_running)
        if budget == cluster.prefill_token_budget:
            continue
        ttft = alone(requests, replace(cluster, prefill_token_budget=budget), slo, bounds).ttft_ms_at_percentile
        if best is None or ttft < best[0]:
            best = (ttft, budget)
    if best is not None:
        remedies.append(Remedy(f"another token budget: {best[1]} instead of {cluster.prefill_token_budget}",
                               "vLLM --max-num-batched-tokens on the "
                               + ("instances" if aggregated else "prefill instances"), best[0], meets(best[0])))
    more = floor.ttft_ms_at_percentile <= slo.ttft_ms and not floor.tpot_ms_at_percentile > slo.tpot_ms
    remedies.append(Remedy("more GPUs", "--gpus; they add capacity, not speed per request, so they help only "
                           "when requests meet the SLO alone", None, more))
    if aggregated:
        remedies.append(Remedy("disaggregated serving", "--topology disaggregated: prefill on its own instances, "
                               "no decode sharing its steps, a wider-TP prefill profile possible", None, None))
    else:
        ttft = alone(requests, to_aggregated(cluster), slo, bounds).ttft_ms_at_percentile
        remedies.append(Remedy("aggregated serving", "--topology aggregated: no KV transfer between prefill and "
                               "decode, prefill chunks share each step with decodes", ttft, meets(ttft)))
    return Feasibility(slo, len(requests), floor, _binding(floor, floor.ttft_ms, slo.ttft_ms),
                       _binding(floor, floor.tpot_ms, slo.tpot_ms), tuple(remedies))
