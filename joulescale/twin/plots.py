"""PNG plots of a comparison (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from joulescale.twin.compare import Comparison


def write_plots(comparison: Comparison, directory: Path) -> list[Path]:
    """Energy per policy and phase, clock over time, TTFT and TPOT distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    names = list(comparison.summaries)
    slo = comparison.settings.slo

    fig, ax = plt.subplots(figsize=(8, 4.5))
    prefill = [comparison.summaries[n].prefill.total_j / 1e3 for n in names]
    decode = [comparison.summaries[n].decode.total_j / 1e3 for n in names]
    labels = list(names)
    if comparison.oracle is not None:
        prefill.append(comparison.oracle.prefill_j / 1e3)
        decode.append(comparison.oracle.decode_j / 1e3)
        labels.append("oracle (bound)")
    ax.bar(labels, prefill, label="prefill")
    ax.bar(labels, decode, bottom=prefill, label="decode")
    ax.set_ylabel("energy (kJ)")
    ax.set_title(f"Energy per policy and phase ({comparison.settings.trace}, load {comparison.settings.load})")
    ax.legend()
    fig.autofmt_xdate(rotation=20)
    written.append(_save(fig, directory / "energy_by_phase.png"))

    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name in names:
        run = comparison.runs[name]
        for ax, gpu, phase in ((axes[0], run.prefill[0].gpu, "prefill"), (axes[1], run.decode[0].gpu, "decode")):
            times = [t for t, _ in gpu.clock_trace] + [run.end_s]
            clocks = [c for _, c in gpu.clock_trace] + [gpu.clock_trace[-1][1]]
            ax.step(times, clocks, where="post", label=name, linewidth=0.8)
            ax.set_ylabel(f"{phase} 0 SM clock (MHz)")
    axes[1].set_xlabel("simulated time (s)")
    axes[0].legend(fontsize=7, ncol=3)
    axes[0].set_title("SM clock over time (first instance of each phase)")
    written.append(_save(fig, directory / "clock_over_time.png"))

    for metric, target, title in (("ttft", slo.ttft_ms, "TTFT"), ("tpot", slo.tpot_ms, "TPOT")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name in names:
            values = sorted((r.ttft_s if metric == "ttft" else r.tpot_s) * 1000.0
                            for r in comparison.runs[name].requests if r.finish_s >= 0)
            if values:
                ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=name, linewidth=0.9)
        ax.axvline(target, color="black", linestyle="--", linewidth=0.8, label=f"SLO {target:.0f} ms")
        ax.set_xlabel(f"{title} (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{title} distribution")
        ax.legend(fontsize=7)
        written.append(_save(fig, directory / f"{metric}_cdf.png"))
    return written


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
