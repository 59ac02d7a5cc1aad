"""The ``joulescale`` command. Errors are mapped to one message and exit status 2 here, nowhere else."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from joulescale.cli_paths import output_file, output_folder
from joulescale.cli_plan import add_plan_command, run_plan_command
from joulescale.cli_planned import add_planner_options, run_planned
from joulescale.cli_profile import add_profile_commands, run_profile_command
from joulescale.control.policy import ClockBounds, Slo
from joulescale.engines.dialects import ENGINE_NAMES
from joulescale.profiles.catalog import profile_by_name_or_path
from joulescale.profiles.loader import ProfileError
from joulescale.twin import limits
from joulescale.twin.capacity import default_cache_dir
from joulescale.twin.compare import NoFeasibleRateError, compare
from joulescale.twin.kv_transfer import kv_media
from joulescale.twin.limits import SettingError
from joulescale.twin.progress import bar_for, quiet
from joulescale.twin.settings import (
    DEFAULT_DURATION_S,
    DEFAULT_POLICIES,
    TOPOLOGY_CHOICES,
    CompareSettings,
    known_policies,
)
from joulescale.twin.steady import DEFAULT_MIX, SteadySettings, measure_steady
from joulescale.twin.traces import TraceError
from joulescale.twin.views import VIEW_NAMES

_EXIT_USAGE = 2
_EXIT_NO_FEASIBLE_RATE = 1
"""No rate meets the SLO and no --rate was given: the explanation is printed, nothing was replayed."""
_AUTO = "auto"
_MAX_MESSAGE_CHARS = 1000
_FLAGS = {
    "load": "--load", "duration_s": "--duration", "gpus": "--gpus", "slo.ttft_ms": "--slo-ttft-ms",
    "slo.tpot_ms": "--slo-tpot-ms", "slo.percentile": "--percentile", "seed": "--seed", "policies": "--policies",
    "prefill_instances": "--prefill-instances", "bounds": "--min-mhz/--max-mhz", "bounds.min_mhz": "--min-mhz",
    "bounds.max_mhz": "--max-mhz", "scrape_period_s": "--scrape-period-ms", "scrape_delay_s": "--scrape-delay-ms",
    "power_limit_watts": "--power-limit-watts", "clock_settle_s": "--clock-settle-ms", "kv_medium": "--kv-medium",
    "view": "--view", "engine": "--engine", "profile": "--profile", "prefill_profile": "--prefill-profile",
    "rate": "--rate", "topology": "--topology",
}
"""``CompareSettings`` fields by the flag that sets them, to name the flag in an error."""


def one_line(message: str) -> str:
    """A message as one printable line: file names and values may hold newlines or escapes."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "..."


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` unless the help already says its default or the option is required."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage block), with status 2, and shows
    every option's default in its help."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(_EXIT_USAGE, f"{self.prog}: error: {one_line(message)}\n")


def _policies(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known_policies()]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown policies {unknown}; known: {','.join(known_policies())}")
    return names


_ms = limits.MAX_PERIOD_MS
_POSITIVE_MS = limits.float_argument(0.0, limits.MAX_SLO_MS, low_open=True, unit=" ms")
_RATE = limits.float_argument(0.0, limits.MAX_RATE_PER_S, low_open=True, unit=" req/s")


def _slo_ms(text: str) -> float | str:
    """A latency target in ms, or ``auto``."""
    return _AUTO if text.strip() == _AUTO else _POSITIVE_MS(text)


def _rate(text: str) -> float | str:
    """``native`` (the trace's own rate) or a rate in req/s."""
    return "native" if text.strip() == "native" else _RATE(text)


_slo_ms.__name__ = "milliseconds or auto"
_rate.__name__ = "native or req/s"
_MHZ = limits.int_argument(1, limits.MAX_CLOCK_MHZ)
_MAX_NUM_SEQS = 65_536
"""vLLM's default is 256 (1024 on large GPUs); ML.ENERGY swept up to 4096."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="joulescale", description="Energy-efficient P/D LLM serving.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    twin = commands.add_parser("twin", help="the digital twin")
    twin_commands = twin.add_subparsers(dest="twin_command", required=True, parser_class=_Parser)
    cmp = twin_commands.add_parser("compare", help="replay a trace under every policy and compare energy")
    cmp.add_argument("--trace", default="azure-conv", help="azure-conv, azure-code, or a CSV / JSON-lines file")
    cmp.add_argument("--rate", type=_rate, default=None,
                     help="replayed rate: 'native' (the trace's own), or R req/s; None: --load x the "
                          "static-max capacity")
    cmp.add_argument("--load", type=limits.float_argument(0.0, limits.MAX_LOAD, low_open=True), default=0.67,
                     help="without --rate: fraction of the static-max SLO capacity to replay at, in (0, 2]")
    cmp.add_argument("--duration", type=limits.float_argument(0.0, limits.MAX_DURATION_S, low_open=True, unit=" s"),
                     default=DEFAULT_DURATION_S,
                     help="simulated seconds of traffic, at most one day (the capacity window is longer when "
                          "this holds too few requests for the percentile)")
    cmp.add_argument("--gpus", type=limits.int_argument(2, limits.MAX_GPUS), default=16,
                     help=f"GPUs of the cluster, 2 to {limits.MAX_GPUS}")
    cmp.add_argument("--profile", default="h100-sxm-llama-70b-tp4", help="GPU profile: a shipped name or a file")
    cmp.add_argument("--prefill-profile", default=None,
                     help="profile of the prefill instances when it differs (e.g. h100-sxm-llama-70b-tp8); "
                          "None: --profile")
    cmp.add_argument("--slo-ttft-ms", type=_slo_ms, default=600.0,
                     help="time-to-first-token target, or 'auto': 20 %% over what static-max reaches at f_max")
    cmp.add_argument("--slo-tpot-ms", type=_slo_ms, default=100.0,
                     help="time-per-output-token target, or 'auto' (as for TTFT)")
    cmp.add_argument("--percentile", type=limits.int_argument(1, 100), default=99,
                     help="the SLO holds when this percentile of requests meets both targets")
    cmp.add_argument("--seed", type=limits.int_argument(0, limits.MAX_SEED), default=0,
                     help="0: the trace from its start; else a random window")
    cmp.add_argument("--policies", type=_policies, default=",".join(DEFAULT_POLICIES),
                     help="comma-separated policies to compare")
    cmp.add_argument("--view", choices=VIEW_NAMES, default="metrics",
                     help="what policies observe: /metrics scrapes or the engine hook")
    cmp.add_argument("--prefill-instances", type=limits.int_argument(1, limits.MAX_GPUS), default=None,
                     help="P/D split; None: the split with the highest static-max capacity")
    cmp.add_argument("--kv-medium", choices=sorted(kv_media()), default="infiniband",
                     help="link the KV cache crosses from prefill to decode")
    cmp.add_argument("--min-mhz", type=_MHZ, default=None, help="lowest SM clock a policy may set; None: the GPU's")
    cmp.add_argument("--max-mhz", type=_MHZ, default=None, help="highest SM clock a policy may set; None: the GPU's")
    cmp.add_argument("--power-limit-watts", type=limits.float_argument(0.0, limits.MAX_POWER_WATTS, low_open=True,
                                                                       unit=" W"),
                     default=None, help="board power cap per GPU; None: the profile's")
    cmp.add_argument("--clock-settle-ms", type=limits.float_argument(0.0, _ms, unit=" ms"), default=None,
                     help="delay before a new clock applies; None: the profile's")
    cmp.add_argument("--scrape-period-ms", type=limits.float_argument(limits.MIN_SCRAPE_PERIOD_MS, _ms, unit=" ms"),
                     default=50.0, help="how often the agent reads an engine's /metrics")
    cmp.add_argument("--scrape-delay-ms", type=limits.float_argument(0.0, _ms, unit=" ms"), default=10.0,
                     help="how late a scrape reaches the policy")
    cmp.add_argument("--engine", choices=ENGINE_NAMES, default="vllm",
                     help="the serving engine simulated: which metrics its /metrics page holds, with which "
                          "buckets, and when they change")
    cmp.add_argument("--topology", choices=TOPOLOGY_CHOICES, default="disaggregated",
                     help="disaggregated (P/D), aggregated (prefill chunks and decodes share each step), "
                          "or both on the same trace, rate and GPUs, with which uses less energy at the SLO "
                          "(both takes --rate but not an auto SLO)")
    cmp.add_argument("--cache-dir", type=Path, default=None,
                     help="capacity cache; None: $XDG_CACHE_HOME/joulescale or ~/.cache/joulescale")
    cmp.add_argument("--no-cache", action="store_true", help="search the capacity again")
    cmp.add_argument("--json", type=output_file, default=None, help="write the comparison as JSON")
    cmp.add_argument("--report", type=output_folder, default=None,
                     help="write JSON, table, PNG plots and one self-contained HTML page (report.html) here")
    add_planner_options(cmp)
    synth = twin_commands.add_parser("synth", help="write a synthetic long-context trace (JSON lines for --trace)")
    synth.add_argument("-o", "--output", type=output_file, required=True, help="the JSON-lines file to write")
    synth.add_argument("--requests", type=limits.int_argument(2, limits.MAX_TRACE_LINES), default=2000,
                       help="requests in the trace")
    synth.add_argument("--rate", type=_RATE, default=1.0, help="mean arrival rate (Poisson), req/s")
    synth.add_argument("--prompt-median-tokens", type=limits.int_argument(1, 131_072), default=8192,
                       help="median prompt length (log-normal, sigma 1, within [256, 131072] tokens)")
    synth.add_argument("--seed", type=limits.int_argument(0, limits.MAX_SEED), default=1,
                       help="the same seed writes the same trace")
    add_profile_commands(commands)
    add_plan_command(commands)
    steady = twin_commands.add_parser(
        "steady", help="one instance kept full at a fixed concurrency: J per output token, W per GPU, tokens/s "
                       "in steady state (ML.ENERGY's measurement)")
    steady.add_argument("--profile", default="h100-sxm-llama-70b-tp4", help="shipped profile name or profile file")
    steady.add_argument("--topology", choices=("aggregated",), default="aggregated",
                        help="serving topology of the instance")
    steady.add_argument("--max-num-seqs", type=limits.int_argument(1, _MAX_NUM_SEQS), required=True,
                        help="sequences kept in the instance (vLLM's --max-num-seqs)")
    steady.add_argument("--clock-mhz", type=_MHZ, default=None, help="SM clock; None: the profile's f_max")
    steady.add_argument("--lengths", default=DEFAULT_MIX,
                        help="length mix: lmarena-chat (ML.ENERGY's Text Conversation task), or a trace "
                             "(azure-conv, azure-code, a file) whose prompt and output lengths are cycled")
    steady.add_argument("--json", type=output_file, default=None, help="write the figures as JSON")
    return parser


def _settings(args: argparse.Namespace) -> CompareSettings:
    bounds = None
    if args.min_mhz is not None or args.max_mhz is not None:
        bounds = ClockBounds(args.min_mhz if args.min_mhz is not None else 0,
                             args.max_mhz if args.max_mhz is not None else limits.MAX_CLOCK_MHZ)
    return CompareSettings(
        trace=args.trace, load=args.load, duration_s=args.duration, gpus=args.gpus, profile=args.profile,
        prefill_profile=args.prefill_profile,
        slo=Slo(600.0 if args.slo_ttft_ms == _AUTO else args.slo_ttft_ms,
                100.0 if args.slo_tpot_ms == _AUTO else args.slo_tpot_ms, args.percentile),
        auto_ttft=args.slo_ttft_ms == _AUTO, auto_tpot=args.slo_tpot_ms == _AUTO, rate=args.rate,
        seed=args.seed, policies=args.policies,
        view=args.view, prefill_instances=args.prefill_instances, kv_medium=args.kv_medium, bounds=bounds,
        scrape_period_s=args.scrape_period_ms / 1000.0, scrape_delay_s=args.scrape_delay_ms / 1000.0,
        engine=args.engine, power_limit_watts=args.power_limit_watts,
        clock_settle_s=args.clock_settle_ms / 1000.0 if args.clock_settle_ms is not None else None,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        topology=args.topology,
    )


def _twin_compare(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from joulescale.twin import report

    if args.report is not None and importlib.util.find_spec("matplotlib") is None:  # before the long run
        raise ValueError("argument --report: the plots need matplotlib: pip install 'joulescale[twin]'")

    settings = _settings(args)
    if args.planner:
        return run_planned(args, settings.slo, args.duration == DEFAULT_DURATION_S, out, err)
    if settings.topology == "both":
        return _twin_compare_topologies(args, settings, out)
    bar = bar_for(err)
    try:
        comparison = compare(settings, progress=bar or quiet)
    except NoFeasibleRateError as error:
        _print_no_feasible_rate(args, error, out)
        return _EXIT_NO_FEASIBLE_RATE
    finally:
        if bar is not None:
            bar.close()
    document = report.to_json(comparison)
    verdict = report.slo_verdict(comparison)
    text = "\n".join([report.preamble(comparison), "", report.table(comparison), *([verdict] if verdict else []), "",
                      report.conclusion(comparison)])
    print(text, file=out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if args.report is not None:
        from joulescale.twin.html_report import write_html
        from joulescale.twin.plots import render_plots, write_plots

        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "comparison.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        (args.report / "table.txt").write_text(text + "\n", encoding="utf-8")
        plots = render_plots(comparison)
        write_plots(plots, args.report)
        page = write_html(comparison, plots, args.report)
        print(f"report: {page} ({len(plots)} plots; PNG files beside it)", file=out)
    return 0


def _print_no_feasible_rate(args: argparse.Namespace, error: NoFeasibleRateError, out: TextIO) -> None:
    print(error.feasibility.text(), file=out)
    print("(nothing replayed: without --rate the replayed rate is --load x a capacity that does not exist; "
          "--rate native or --rate R replays anyway)", file=out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"trace": args.trace, "feasibility": error.feasibility.to_json()},
                                        indent=2) + "\n", encoding="utf-8")


def _twin_synth(args: argparse.Namespace, out: TextIO) -> int:
    from joulescale.twin.synth import LongContextSpec, long_context_trace, to_jsonl

    trace = long_context_trace(LongContextSpec(requests=args.requests, rate_per_s=args.rate,
                                               prompt_median_tokens=max(256, args.prompt_median_tokens),
                                               seed=args.seed))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(to_jsonl(trace), encoding="utf-8")
    longest = max(r.prompt_tokens for r in trace.requests)
    print(f"{args.output}: {len(trace.requests)} requests over {trace.duration_s:.0f} s, prompts up to {longest} "
          "tokens", file=out)
    return 0


def _twin_compare_topologies(args: argparse.Namespace, settings: CompareSettings, out: TextIO) -> int:
    """``--topology both``: each topology's table, then the verdict; --report writes one folder each."""
    from joulescale.twin import report, topology

    try:
        result = topology.compare_topologies(settings)
    except NoFeasibleRateError as error:
        _print_no_feasible_rate(args, error, out)
        return _EXIT_NO_FEASIBLE_RATE
    text = topology.text(result)
    print(text, file=out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(topology.to_json(result), indent=2) + "\n", encoding="utf-8")
    if args.report is not None:
        from joulescale.twin.html_report import write_html
        from joulescale.twin.plots import render_plots, write_plots

        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "topologies.json").write_text(json.dumps(topology.to_json(result), indent=2) + "\n",
                                                     encoding="utf-8")
        (args.report / "table.txt").write_text(text + "\n", encoding="utf-8")
        for name, comparison in result.comparisons.items():
            folder = args.report / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "comparison.json").write_text(json.dumps(report.to_json(comparison), indent=2) + "\n",
                                                    encoding="utf-8")
            plots = render_plots(comparison)
            write_plots(plots, folder)
            print(f"report: {write_html(comparison, plots, folder)} ({len(plots)} plots)", file=out)
    return 0


def _twin_steady(args: argparse.Namespace, out: TextIO) -> int:
    profile = profile_by_name_or_path(args.profile)
    result = measure_steady(SteadySettings(profile, args.max_num_seqs, args.clock_mhz, args.lengths))
    print(result.text(), file=out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse printed its one line (or --help) to sys.stderr
        return exit_.code if isinstance(exit_.code, int) else _EXIT_USAGE
    try:
        if args.command == "twin" and args.twin_command == "compare":
            return _twin_compare(args, stdout, stderr)
        if args.command == "twin" and args.twin_command == "synth":
            return _twin_synth(args, stdout)
        if args.command == "profile" and args.profile_command == "generate":
            return run_profile_command(args, list(argv) if argv is not None else sys.argv[1:], stdout)
        if args.command == "twin" and args.twin_command == "steady":
            return _twin_steady(args, stdout)
        if args.command == "plan":
            return run_plan_command(args, stdout)
    except SettingError as error:
        flag = _FLAGS.get(error.setting)
        print(one_line(f"joulescale: error: {f'argument {flag}: ' if flag else ''}{error}"), file=stderr)
        return _EXIT_USAGE
    except (TraceError, ProfileError, ValueError, OSError) as error:
        print(one_line(f"joulescale: error: {error}"), file=stderr)
        return _EXIT_USAGE
    return _EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
