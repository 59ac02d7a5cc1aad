"""The plots of a comparison, one idea each, as PNG bytes (matplotlib, Agg backend: no display).

The same bytes go to the PNG files of ``--report`` and, as data URIs, into its HTML page, so
the two never disagree.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joulescale.twin.compare import Comparison
from joulescale.twin.report import BASELINE, SLO_TOLERANCE_POINTS
from joulescale.twin.simulator import RunResult

CLOCK_BINS = 150
"""Time bins of the clock-over-time panels: a policy may change clocks many times a second, which a
raw step line would paint into a solid block; a mean with its min-max band per bin stays readable."""


@dataclass(frozen=True, slots=True)
class Plot:
    name: str
    """File stem: the PNG is ``{name}.png``."""
    title: str
    caption: str
    png: bytes


def render_plots(comparison: Comparison) -> list[Plot]:
    """Every plot of the report, in reading order."""
    import matplotlib

    matplotlib.use("Agg")
    makers: tuple[Callable[[Comparison], Plot], ...] = (
        _energy_vs_attainment, _energy_by_phase, _clock_over_time, _time_at_clock, _ttft_ccdf, _tpot_ccdf)
    return [make(comparison) for make in makers]


def write_plots(plots: Sequence[Plot], directory: Path) -> list[Path]:
    """Each plot as ``{name}.png`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for plot in plots:
        path = directory / f"{plot.name}.png"
        path.write_bytes(plot.png)
        written.append(path)
    return written


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _where(comparison: Comparison) -> str:
    s = comparison.settings
    return f"{s.trace}, load {s.load:g}, {comparison.cluster.gpus} GPUs"


def _energy_vs_attainment(comparison: Comparison) -> Plot:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    summaries = comparison.summaries
    for index, (name, summary) in enumerate(summaries.items()):
        baseline = name == BASELINE
        ax.scatter(summary.slo_attainment * 100, summary.total_j / 1e3, s=160 if baseline else 60,
                   marker="*" if baseline else "o", color="black" if baseline else f"C{index}", zorder=3,
                   label=f"{name} (baseline)" if baseline else name)
        ax.annotate(name, (summary.slo_attainment * 100, summary.total_j / 1e3), textcoords="offset points",
                    xytext=(7, 4 - 10 * (index % 2)), fontsize=7)
    if comparison.oracle is not None:
        ax.axhline(comparison.oracle.total_j / 1e3, color="grey", linestyle="--", linewidth=1.0,
                   label="oracle: energy lower bound (SLO relaxed)")
    base = summaries.get(BASELINE)
    if base is not None:
        ax.axvline(base.slo_attainment * 100 - SLO_TOLERANCE_POINTS, color="tab:red", linestyle=":", linewidth=1.0,
                   label=f"SLO floor: static-max - {SLO_TOLERANCE_POINTS:g} points")
    lowest = min([s.slo_attainment * 100 for s in summaries.values()]
                 + ([base.slo_attainment * 100 - SLO_TOLERANCE_POINTS] if base else []))
    ax.set_xlim(lowest - max(0.5, (100 - lowest) * 0.1), 100.5)
    ax.set_xlabel("SLO attainment (% of requests meeting TTFT and TPOT)")
    ax.set_ylabel("energy, all GPUs (kJ)")
    ax.set_title(f"Energy against SLO attainment ({_where(comparison)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return Plot("energy_vs_slo", "Energy against SLO attainment",
                "Lower is cheaper, further right meets the SLO for more requests: the best trade-off sits at the "
                "bottom right. A policy left of the red line misses the SLO for noticeably more requests than "
                "static-max; the dashed line is the oracle's bound, which no policy can beat.", _png(fig))


def _energy_by_phase(comparison: Comparison) -> Plot:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(comparison.summaries)
    prefill = [comparison.summaries[n].prefill.total_j / 1e3 for n in names]
    decode = [comparison.summaries[n].decode.total_j / 1e3 for n in names]
    if comparison.oracle is not None:
        names.append("oracle (bound)")
        prefill.append(comparison.oracle.prefill_j / 1e3)
        decode.append(comparison.oracle.decode_j / 1e3)
    aggregated = comparison.cluster.topology == "aggregated"  # one instance runs both: its energy split by phase
    ax.bar(names, prefill, label="prefill parts of the steps" if aggregated else "prefill instances")
    ax.bar(names, decode, bottom=prefill, label="decode parts and idle" if aggregated else "decode instances")
    ax.set_ylabel("energy (kJ)")
    ax.set_title(f"Energy per policy and phase ({_where(comparison)})")
    ax.legend(fontsize=8)
    fig.autofmt_xdate(rotation=20)
    return Plot("energy_by_phase", "Energy per policy and phase",
                "Where each policy spends its energy: the prefill and the decode instances, busy and idle power "
                "over the same horizon (aggregated instances: each step's energy split by its phases' parts, "
                "idle power with decode).", _png(fig))


def binned_clock(trace: Sequence[tuple[float, int]], end_s: float, bins: int
                 ) -> tuple[list[float], list[float], list[float], list[float]]:
    """(bin centres, time-weighted mean clock, lowest, highest clock held) of a step trace over [0, end_s]."""
    width = end_s / bins
    centres, means, lows, highs = [], [], [], []
    index = 0
    for b in range(bins):
        start, stop = b * width, (b + 1) * width
        while index + 1 < len(trace) and trace[index + 1][0] <= start:
            index += 1
        weighted, low, high, i = 0.0, float("inf"), float("-inf"), index
        while True:
            seg_start = max(start, trace[i][0])
            seg_stop = min(stop, trace[i + 1][0]) if i + 1 < len(trace) else stop
            if seg_stop > seg_start:
                weighted += trace[i][1] * (seg_stop - seg_start)
                low, high = min(low, trace[i][1]), max(high, trace[i][1])
            if i + 1 >= len(trace) or trace[i + 1][0] >= stop:
                break
            i += 1
        centres.append((start + stop) / 2)
        means.append(weighted / width)
        lows.append(low)
        highs.append(high)
    return centres, means, lows, highs


def _clock_over_time(comparison: Comparison) -> Plot:
    import matplotlib.pyplot as plt

    names = list(comparison.runs)
    end_s = max(run.end_s for run in comparison.runs.values())
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.2 + 1.5 * len(names)), sharex=True, sharey=True,
                             squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        run: RunResult = comparison.runs[name]
        for color, phase, instances in (("C0", "prefill", run.prefill), ("C1", "decode", run.decode),
                                        ("C2", "aggregated", run.aggregated)):
            if not instances:  # a topology without this phase
                continue
            centres, means, lows, highs = binned_clock(instances[0].gpu.clock_trace, end_s, CLOCK_BINS)
            ax.fill_between(centres, lows, highs, step="mid", color=color, alpha=0.25, linewidth=0)
            ax.step(centres, means, where="mid", color=color, linewidth=1.0, label=f"{phase} instance 0")
        ax.set_ylabel("SM clock\n(MHz)", fontsize=8)
        ax.set_title(name, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=2, loc="lower right")
    axes[-1, 0].set_xlabel("simulated time (s)")
    fig.suptitle(f"SM clock over time, one panel per policy (mean and min-max per {end_s / CLOCK_BINS:.2g} s)")
    fig.tight_layout()
    return Plot("clock_over_time", "SM clock over time",
                "One panel per policy, the first instance of each phase. The line is the time-weighted mean clock "
                f"in each of {CLOCK_BINS} bins, the band the lowest to highest clock held in it: a wide band means "
                "the policy moved the clock within the bin.", _png(fig))


def _time_at_clock(comparison: Comparison) -> Plot:
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    names = list(comparison.summaries)
    clocks = sorted({mhz for s in comparison.summaries.values() for per in s.time_at_clock_s.values() for mhz in per}) or [0]
    norm = colors.Normalize(min(clocks), max(clocks)) if len(clocks) > 1 else colors.Normalize(clocks[0] - 1, clocks[0])
    cmap = plt.get_cmap("viridis")
    phases = [p for p in ("prefill", "decode", "aggregated") if any(s.time_at_clock_s.get(p) for s in comparison.summaries.values())] or ["prefill", "decode"]
    fig, axes = plt.subplots(1, len(phases), figsize=(10, 1.8 + 0.45 * len(names)), sharey=True,
                             layout="constrained", squeeze=False)
    for ax, phase in zip(axes[0], phases, strict=True):
        for row, name in enumerate(names):
            per_clock = comparison.summaries[name].time_at_clock_s.get(phase, {})
            total = sum(per_clock.values())
            left = 0.0
            for mhz in sorted(per_clock):
                share = per_clock[mhz] / total * 100 if total else 0.0
                ax.barh(row, share, left=left, color=cmap(norm(mhz)), height=0.7)
                left += share
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"share of busy {phase} GPU time (%)")
        ax.set_title(f"{phase} instances", fontsize=9)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), label="SM clock (MHz)")
    fig.suptitle("Time share at each SM clock while busy, per phase")
    return Plot("time_at_clock", "Time share at each SM clock",
                "How long each policy ran iterations at each clock, summed over a phase's GPUs: the colour is the "
                "clock, so a bar that is mostly yellow computed near the highest clock.", _png(fig))


def _ccdf(comparison: Comparison, metric: str) -> Plot:
    import matplotlib.pyplot as plt

    slo = comparison.settings.slo
    target, label = (slo.ttft_ms, "TTFT") if metric == "ttft" else (slo.tpot_ms, "TPOT")
    tail = 1.0 - slo.percentile / 100.0
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    smallest = 1.0
    for index, (name, run) in enumerate(comparison.runs.items()):
        finished = [r for r in run.requests if r.finish_s >= 0 and (metric == "ttft" or r.output_tokens > 1)]
        values = sorted((r.ttft_s if metric == "ttft" else r.tpot_s) * 1000.0 for r in finished)
        if not values:
            continue
        count = len(values)
        ax.step(values, [(count - i) / count for i in range(count)], where="post", color=f"C{index}",
                linewidth=1.0, label=name)
        smallest = min(smallest, 1.0 / count)
        summary = comparison.summaries.get(name)
        at = summary.ttft_ms_at_percentile if summary and metric == "ttft" else (
            summary.tpot_ms_at_percentile if summary else None)
        if at is not None:
            ax.plot([at], [tail], marker="o", color=f"C{index}", markersize=5)
    ax.axvline(target, color="black", linestyle="--", linewidth=0.9, label=f"SLO target {target:g} ms")
    if tail > 0:
        ax.axhline(tail, color="tab:red", linestyle=":", linewidth=0.9,
                   label=f"P{slo.percentile:g}: {tail * 100:g} % may exceed (dots: each policy's P{slo.percentile:g})")
    ax.set_yscale("log")
    ax.set_ylim(bottom=min(smallest, tail if tail > 0 else smallest) / 2, top=1.05)
    ax.set_xlabel(f"{label} (ms)")
    ax.set_ylabel("fraction of requests at or above (log)")
    ax.set_title(f"{label} tail: fraction of requests at or above each latency")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the tails fill the axes
    return Plot(f"{metric}_ccdf", f"{label} distribution and its tail",
                f"A complementary CDF on a log axis, so the tail is visible: the SLO holds for a policy when its "
                f"dot (its P{slo.percentile:g} {label}) lies left of the dashed target.", _png(fig))


def _ttft_ccdf(comparison: Comparison) -> Plot:
    return _ccdf(comparison, "ttft")


def _tpot_ccdf(comparison: Comparison) -> Plot:
    return _ccdf(comparison, "tpot")
