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
from joulescale.control.policy import ClockBounds, Slo
from joulescale.engines.dialects import ENGINE_NAMES
from joulescale.profiles.loader import ProfileError
from joulescale.twin import limits
from joulescale.twin.capacity import default_cache_dir
from joulescale.twin.compare import compare
from joulescale.twin.kv_transfer import kv_media
from joulescale.twin.limits import SettingError
from joulescale.twin.settings import DEFAULT_DURATION_S, DEFAULT_POLICIES, CompareSettings
from joulescale.twin.traces import TraceError
from joulescale.twin.views import VIEW_NAMES

_EXIT_USAGE = 2
_MAX_MESSAGE_CHARS = 1000
_FLAGS = {
    "load": "--load", "duration_s": "--duration", "gpus": "--gpus", "slo.ttft_ms": "--slo-ttft-ms",
    "slo.tpot_ms": "--slo-tpot-ms", "slo.percentile": "--percentile", "seed": "--seed", "policies": "--policies",
    "prefill_instances": "--prefill-instances", "bounds": "--min-mhz/--max-mhz", "bounds.min_mhz": "--min-mhz",
    "bounds.max_mhz": "--max-mhz", "scrape_period_s": "--scrape-period-ms", "scrape_delay_s": "--scrape-delay-ms",
    "power_limit_watts": "--power-limit-watts", "clock_settle_s": "--clock-settle-ms", "kv_medium": "--kv-medium",
    "view": "--view", "engine": "--engine", "profile": "--profile", "prefill_profile": "--prefill-profile",
}
"""``CompareSettings`` fields by the flag that sets them, to name the flag in an error."""


def one_line(message: str) -> str:
    """A message as one printable line: file names and values may hold newlines or escapes."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "..."


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage block), with status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(_EXIT_USAGE, f"{self.prog}: error: {one_line(message)}\n")


def _policies(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in DEFAULT_POLICIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown policies {unknown}; known: {','.join(DEFAULT_POLICIES)}")
    return names


_ms = limits.MAX_PERIOD_MS
_POSITIVE_MS = limits.float_argument(0.0, limits.MAX_SLO_MS, low_open=True, unit=" ms")
_MHZ = limits.int_argument(1, limits.MAX_CLOCK_MHZ)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="joulescale", description="Energy-efficient P/D LLM serving.")
    commands = parser.add_subparsers(dest="command", required=True)
    twin = commands.add_parser("twin", help="the digital twin")
    twin_commands = twin.add_subparsers(dest="twin_command", required=True)
    cmp = twin_commands.add_parser("compare", help="replay a trace under every policy and compare energy")
    cmp.add_argument("--trace", default="azure-conv", help="azure-conv, azure-code, or a CSV / JSON-lines file")
    cmp.add_argument("--load", type=limits.float_argument(0.0, limits.MAX_LOAD, low_open=True), default=0.67,
                     help="fraction of the static-max SLO capacity, in (0, 2]")
    cmp.add_argument("--duration", type=limits.float_argument(0.0, limits.MAX_DURATION_S, low_open=True, unit=" s"),
                     default=DEFAULT_DURATION_S,
                     help=f"simulated seconds of traffic (default {DEFAULT_DURATION_S:.0f}, at most one day)")
    cmp.add_argument("--gpus", type=limits.int_argument(2, limits.MAX_GPUS), default=16,
                     help=f"GPUs of the cluster, 2 to {limits.MAX_GPUS}")
    cmp.add_argument("--profile", default="h100-sxm-llama-70b-tp4")
    cmp.add_argument("--prefill-profile", default=None,
                     help="profile of the prefill instances when it differs (e.g. h100-sxm-llama-70b-tp8)")
    cmp.add_argument("--slo-ttft-ms", type=_POSITIVE_MS, default=600.0)
    cmp.add_argument("--slo-tpot-ms", type=_POSITIVE_MS, default=100.0)
    cmp.add_argument("--percentile", type=limits.int_argument(1, 100), default=99)
    cmp.add_argument("--seed", type=limits.int_argument(0, limits.MAX_SEED), default=0,
                     help="0: the trace from its start; else a random window")
    cmp.add_argument("--policies", type=_policies, default=DEFAULT_POLICIES,
                     help=f"comma-separated subset of {','.join(DEFAULT_POLICIES)}")
    cmp.add_argument("--view", choices=VIEW_NAMES, default="metrics",
                     help="what policies observe: /metrics scrapes (default) or the engine hook")
    cmp.add_argument("--prefill-instances", type=limits.int_argument(1, limits.MAX_GPUS), default=None,
                     help="P/D split; default: the split with the highest static-max capacity")
    cmp.add_argument("--kv-medium", choices=sorted(kv_media()), default="infiniband")
    cmp.add_argument("--min-mhz", type=_MHZ, default=None, help="lowest SM clock a policy may set")
    cmp.add_argument("--max-mhz", type=_MHZ, default=None, help="highest SM clock a policy may set")
    cmp.add_argument("--power-limit-watts", type=limits.float_argument(0.0, limits.MAX_POWER_WATTS, low_open=True,
                                                                       unit=" W"),
                     default=None, help="board power cap per GPU")
    cmp.add_argument("--clock-settle-ms", type=limits.float_argument(0.0, _ms, unit=" ms"), default=None,
                     help="delay before a new clock applies")
    cmp.add_argument("--scrape-period-ms", type=limits.float_argument(limits.MIN_SCRAPE_PERIOD_MS, _ms, unit=" ms"),
                     default=50.0)
    cmp.add_argument("--scrape-delay-ms", type=limits.float_argument(0.0, _ms, unit=" ms"), default=10.0)
    cmp.add_argument("--engine", choices=ENGINE_NAMES, default="vllm",
                     help="the serving engine simulated: which metrics its /metrics page holds, with which "
                          "buckets, and when they change (default: vllm)")
    cmp.add_argument("--cache-dir", type=Path, default=None, help="capacity cache (default: user cache dir)")
    cmp.add_argument("--no-cache", action="store_true", help="search the capacity again")
    cmp.add_argument("--json", type=output_file, default=None, help="write the comparison as JSON")
    cmp.add_argument("--report", type=output_folder, default=None, help="write JSON, table and PNG plots here")
    return parser


def _settings(args: argparse.Namespace) -> CompareSettings:
    bounds = None
    if args.min_mhz is not None or args.max_mhz is not None:
        bounds = ClockBounds(args.min_mhz if args.min_mhz is not None else 0,
                             args.max_mhz if args.max_mhz is not None else limits.MAX_CLOCK_MHZ)
    return CompareSettings(
        trace=args.trace, load=args.load, duration_s=args.duration, gpus=args.gpus, profile=args.profile,
        prefill_profile=args.prefill_profile,
        slo=Slo(args.slo_ttft_ms, args.slo_tpot_ms, args.percentile), seed=args.seed, policies=args.policies,
        view=args.view, prefill_instances=args.prefill_instances, kv_medium=args.kv_medium, bounds=bounds,
        scrape_period_s=args.scrape_period_ms / 1000.0, scrape_delay_s=args.scrape_delay_ms / 1000.0,
        engine=args.engine, power_limit_watts=args.power_limit_watts,
        clock_settle_s=args.clock_settle_ms / 1000.0 if args.clock_settle_ms is not None else None,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
    )


def _twin_compare(args: argparse.Namespace, out: TextIO) -> int:
    from joulescale.twin import report

    if args.report is not None and importlib.util.find_spec("matplotlib") is None:  # before the long run
        raise ValueError("argument --report: the plots need matplotlib: pip install 'joulescale[twin]'")

    comparison = compare(_settings(args))
    document = report.to_json(comparison)
    verdict = report.slo_verdict(comparison)
    text = "\n".join([report.preamble(comparison), "", report.table(comparison), *([verdict] if verdict else []), "",
                      report.conclusion(comparison)])
    print(text, file=out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if args.report is not None:
        from joulescale.twin.plots import write_plots

        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "comparison.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        (args.report / "table.txt").write_text(text + "\n", encoding="utf-8")
        plots = write_plots(comparison, args.report)
        print(f"report: {args.report} ({len(plots)} plots)", file=out)
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
            return _twin_compare(args, stdout)
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
