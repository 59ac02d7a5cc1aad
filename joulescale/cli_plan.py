"""``joulescale plan``: how many GPUs, which split, TP and base clocks for a trace and an SLO."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, TextIO

import yaml

from joulescale.api import EnergyAwareLLMService
from joulescale.cli_paths import output_file
from joulescale.control.policy import Slo
from joulescale.planning.settings import DEFAULT_MARGIN
from joulescale.profiles.catalog import profile_by_name_or_path
from joulescale.twin import limits
from joulescale.twin.capacity import default_cache_dir
from joulescale.twin.kv_transfer import kv_media
from joulescale.twin.sizing import SizedPlan, Sizing, size
from joulescale.twin.traces import load_trace

DEFAULT_PROFILES = "h100-sxm-llama-70b-tp2,h100-sxm-llama-70b-tp4,h100-sxm-llama-70b-tp8"
DEFAULT_ENGINE_IMAGE = "vllm/vllm-openai:v0.11.0"
_MAX_SWEEP = 64
_BASE_CLOCK_ANNOTATION = "joulescale.io/planned-base-clock-mhz-"


def gpu_counts(text: str) -> list[int]:
    """``16``, ``8,12,16`` or ``8-16`` (every size from 8 to 16)."""
    counts: set[int] = set()
    one = limits.int_argument(1, limits.MAX_GPUS)
    for part in (p.strip() for p in text.split(",")):
        if re.fullmatch(r"\d+\s*-\s*\d+", part):
            low, high = (one(v.strip()) for v in part.split("-"))
            if high < low:
                raise argparse.ArgumentTypeError(f"empty range {part}")
            counts.update(range(low, high + 1))
        else:
            counts.add(one(part))
    if not counts or len(counts) > _MAX_SWEEP:
        raise argparse.ArgumentTypeError(f"give 1 to {_MAX_SWEEP} cluster sizes")
    return sorted(counts)


gpu_counts.__name__ = "N, N,M,... or N-M"


def add_plan_command(commands: Any) -> None:
    """The ``plan`` command, on the parser's subcommands (argparse types them loosely)."""
    plan = commands.add_parser(
        "plan", help="size a P/D service for a trace: GPUs, split, TP, base clocks, power and J/token",
        description="Plans the trace's traffic (its own mean rate, with the planner's margin) on each GPU budget "
                    "with the twin's candidate tables and the planner's integer program (docs/planner.md).")
    plan.add_argument("--trace", default="azure-conv", help="azure-conv, azure-code, or a CSV / JSON-lines file")
    plan.add_argument("--gpus", type=gpu_counts, default=[16],
                      help="GPU budget per product: N, a list N,M,... or a range N-M; a sweep reports the smallest "
                           "that meets the SLO (default: 16)")
    plan.add_argument("--profile", default=DEFAULT_PROFILES,
                      help="comma-separated profiles (names or files) of one model: the candidate instances")
    plan.add_argument("--slo-ttft-ms", type=limits.float_argument(0.0, limits.MAX_SLO_MS, low_open=True), default=600.0,
                      help="time-to-first-token target at the percentile, ms")
    plan.add_argument("--slo-tpot-ms", type=limits.float_argument(0.0, limits.MAX_SLO_MS, low_open=True), default=100.0,
                      help="time-per-output-token target at the percentile, ms")
    plan.add_argument("--percentile", type=int, choices=(50, 90, 95, 99), default=99,
                      help="the SLO percentile (those spec.slo.percentile accepts)")
    plan.add_argument("--margin", type=limits.float_argument(0.0, 10.0), default=DEFAULT_MARGIN,
                      help="capacity kept above the rate, per phase (0.2: 20 %%)")
    plan.add_argument("--rate", type=limits.float_argument(0.0, limits.MAX_RATE_PER_S, low_open=True), default=None,
                      help="plan for this rate in req/s instead of the trace's own mean rate (default: None)")
    plan.add_argument("--kv-medium", choices=sorted(kv_media()), default="infiniband",
                      help="link the KV cache crosses from prefill to decode")
    plan.add_argument("--cache-dir", type=Path, default=None,
                      help="table cache; None: $XDG_CACHE_HOME/joulescale or ~/.cache/joulescale")
    plan.add_argument("--json", type=output_file, default=None, help="write the plans as JSON")
    plan.add_argument("--emit-service", type=output_file, default=None,
                      help="write an EnergyAwareLLMService for the recommended plan (the smallest budget that "
                           "meets the SLO) (default: None)")
    plan.add_argument("--service-name", default="llm", help="metadata.name of the emitted service")
    plan.add_argument("--engine-image", default=DEFAULT_ENGINE_IMAGE, help="spec.engine.image of the emitted service")


def run_plan_command(args: argparse.Namespace, out: TextIO) -> int:
    profiles = [profile_by_name_or_path(name.strip()) for name in args.profile.split(",") if name.strip()]
    if not profiles:
        raise ValueError("argument --profile: give at least one profile")
    slo = Slo(args.slo_ttft_ms, args.slo_tpot_ms, args.percentile)
    sizing = size(load_trace(args.trace), profiles, args.gpus, slo, args.margin,
                  args.cache_dir or default_cache_dir(), medium=args.kv_medium, rate_rps=args.rate)
    print_sizing(sizing, out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(sizing.to_json(), indent=2) + "\n", encoding="utf-8")
    if args.emit_service is not None:
        chosen = sizing.smallest
        if chosen is None:
            raise ValueError("argument --emit-service: no budget meets the SLO, there is no plan to write")
        service = service_manifest(chosen, profiles[0].model, slo, args.service_name, args.engine_image, args.margin)
        args.emit_service.parent.mkdir(parents=True, exist_ok=True)
        args.emit_service.write_text(yaml.safe_dump(service, sort_keys=False), encoding="utf-8")
        print(f"wrote {args.emit_service} ({chosen.gpus}-GPU plan)", file=out)
    return 0 if sizing.smallest is not None else 1


def _describe(plan: SizedPlan) -> list[str]:
    placement = plan.placement
    if placement is None or plan.headroom is None:
        binding = getattr(plan.result, "binding", "")
        return [f"{plan.gpus:>5} GPUs: no placement ({binding}): {getattr(plan.result, 'detail', '')}"]
    roles = "; ".join(f"{a.replicas} x {a.candidate.phase} TP{a.candidate.tensor_parallel_size} "
                      f"@ {a.candidate.base_clock_mhz} MHz" for a in sorted(placement.allocations, reverse=True))
    return [f"{plan.gpus:>5} GPUs: {roles}; {placement.gpus} GPUs used, {plan.gpus - placement.gpus} given back",
            f"{'':>12}expected {plan.power_watts:,.0f} W, {plan.joules_per_token:.2f} J/output token; headroom "
            f"prefill {100 * plan.headroom['prefill']:+.0f} %, decode {100 * plan.headroom['decode']:+.0f} %"]


def print_sizing(sizing: Sizing, out: TextIO) -> None:
    slo = sizing.slo
    print(f"trace {sizing.trace.name}: {len(sizing.trace.requests)} requests over {sizing.trace.duration_s:.0f} s; "
          f"planned at {sizing.rate_rps:.2f} req/s (+{100 * sizing.margin:.0f} % margin), mean prompt "
          f"{sizing.mean_prompt_tokens:.0f} / output {sizing.mean_output_tokens:.0f} tokens", file=out)
    print(f"SLO: P{slo.percentile} TTFT {slo.ttft_ms:g} ms, TPOT {slo.tpot_ms:g} ms; {sizing.candidates} candidates, "
          f"{sizing.tables_computed} tables computed in {sizing.tables_s:.1f} s (the others cached)", file=out)
    for plan in sizing.plans:
        for line in _describe(plan):
            print(line, file=out)
    if len(sizing.plans) > 1:
        smallest = sizing.smallest
        print("smallest cluster meeting the SLO at this rate: "
              + (f"{smallest.gpus} GPUs" if smallest is not None else "none of these"), file=out)


def service_manifest(plan: SizedPlan, model: str, slo: Slo, name: str, image: str, margin: float) -> dict[str, Any]:
    """The EnergyAwareLLMService for ``plan``: fixed replicas and TP per role; the planned base
    clocks as annotations (the spec bounds clocks, it does not pin them). Checked by the API models."""
    placement = plan.placement
    if placement is None:
        raise ValueError("an infeasible plan has no service")
    roles: dict[str, Any] = {}
    annotations = {"joulescale.io/planned-by": f"joulescale plan ({plan.gpus} GPUs)"}
    for phase in ("prefill", "decode"):
        (allocation,) = placement.role(phase)  # the program runs one shape per role
        candidate = allocation.candidate
        roles[phase] = {"replicas": allocation.replicas, "tensorParallelSize": candidate.tensor_parallel_size,
                        "gpu": {"products": [candidate.gpu_product]}}
        annotations[_BASE_CLOCK_ANNOTATION + phase] = str(candidate.base_clock_mhz)
    manifest: dict[str, Any] = {
        "apiVersion": "joulescale.io/v1alpha1", "kind": "EnergyAwareLLMService",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "model": {"name": model},
            "engine": {"name": "vllm", "image": image},
            "prefill": roles["prefill"], "decode": roles["decode"],
            "slo": {"ttftMs": round(slo.ttft_ms), "tpotMs": round(slo.tpot_ms), "percentile": slo.percentile},
            "energy": {"policy": "joulescale", "planner": {"safetyMarginPercent": min(100, round(100 * margin))}},
        },
    }
    EnergyAwareLLMService.model_validate(manifest)
    return manifest
