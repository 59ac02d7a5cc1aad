"""``joulescale twin compare --planner``: the options of the coarse tier's comparison and its run."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from joulescale.control.policy import Slo
from joulescale.planning.forecast import DEFAULT_FORECASTER, FORECASTERS
from joulescale.planning.settings import (
    DEFAULT_INTERVAL_S,
    DEFAULT_MARGIN,
    DEFAULT_MEMORY_INTERVALS,
    DEFAULT_STARTUP_S,
)
from joulescale.twin import limits
from joulescale.twin.capacity import default_cache_dir
from joulescale.twin.long_windows import HOUR_S
from joulescale.twin.traces import check_spans_time, load_trace

WINDOWS = ("hour", "day", "duration")


def add_planner_options(cmp: argparse.ArgumentParser) -> None:
    group = cmp.add_argument_group("the coarse tier (--planner)")
    group.add_argument("--planner", action="store_true",
                       help="run distserve, place-only, biscale and joulescale with the planner in the loop on a "
                            "long window (--window) at the trace's own rate unless --rate is given")
    group.add_argument("--window", choices=WINDOWS, default="hour",
                       help="with --planner: one hour of the trace, a day compressed into --duration seconds "
                            "(3600 when --duration is left at its default), or --duration seconds")
    group.add_argument("--day-swing", type=limits.float_argument(1.0, 100.0), default=3.0,
                       help="with --window day: the assumed daily peak-to-trough rate ratio")
    group.add_argument("--planner-interval-s", type=limits.float_argument(1.0, 86_400.0, unit=" s"),
                       default=DEFAULT_INTERVAL_S, help="how often the planner decides")
    group.add_argument("--startup-s", type=limits.float_argument(0.0, 86_400.0, unit=" s"),
                       default=DEFAULT_STARTUP_S, help="seconds before a new replica serves (it draws idle power)")
    group.add_argument("--margin", type=limits.float_argument(0.0, 10.0), default=DEFAULT_MARGIN,
                       help="capacity kept above the forecast, per phase")
    group.add_argument("--memory-s", type=limits.float_argument(0.0, 86_400.0, unit=" s"), default=None,
                       help="how long the planner remembers the burst rate, the longest prompt and the starting "
                            f"placement (default: {DEFAULT_MEMORY_INTERVALS} planner intervals; 0: plan from the "
                            "forecast alone)")
    group.add_argument("--forecaster", choices=sorted(FORECASTERS), default=DEFAULT_FORECASTER,
                       help="the planner's forecaster")


def run_planned(args: argparse.Namespace, slo: Slo, duration_is_default: bool, out: TextIO, err: TextIO) -> int:
    from joulescale.twin.planned_compare import PlannedSettings, compare_planned, text, to_json
    from joulescale.twin.progress import bar_for, quiet

    if "auto" in (args.slo_ttft_ms, args.slo_tpot_ms):
        raise ValueError("--planner needs the SLO in ms (an auto target is measured on a fixed cluster)")
    if args.view != "metrics" or args.topology != "disaggregated":
        raise ValueError("--planner runs the disaggregated topology in the metrics view (what production sees)")
    trace = load_trace(args.trace)
    check_spans_time(trace)  # a window replays the trace at a multiple of its own rate
    rate_scale = 1.0
    if args.rate is not None and args.rate != "native":
        rate_scale = args.rate / trace.requests_per_second
    duration = HOUR_S if duration_is_default else args.duration
    settings = PlannedSettings(
        trace=args.trace, window=args.window, duration_s=duration, rate_scale=rate_scale, day_swing=args.day_swing,
        gpus=args.gpus, profile=args.profile, slo=slo, interval_s=args.planner_interval_s, startup_s=args.startup_s,
        margin=args.margin, memory_s=args.memory_s, forecaster=args.forecaster, engine=args.engine,
        kv_medium=args.kv_medium,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()))
    bar = bar_for(err)
    try:
        comparison = compare_planned(settings, progress=bar or quiet)
    finally:
        if bar is not None:
            bar.close()
    print(text(comparison), file=out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_json(comparison), indent=2) + "\n", encoding="utf-8")
    return 0
