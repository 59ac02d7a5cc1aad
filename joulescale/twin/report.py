"""What a comparison says: the JSON document, the printed table and its one-line conclusion."""

from __future__ import annotations

import math

from joulescale.control.registry import reference_variant, twin_variants
from joulescale.twin.capacity import window_requests
from joulescale.twin.cluster import ClusterConfig
from joulescale.twin.compare import Comparison
from joulescale.twin.feasibility import AUTO_HEADROOM
from joulescale.twin.settings import ORACLE

BASELINE = reference_variant()
"""The yardstick of savings and SLO holding (static-max), from the policy registry."""
SLO_TOLERANCE_POINTS = 0.5
"""A policy holds the SLO when its attainment is at most this many points under static-max's: a
saving bought with more missed requests than that is not a saving a user can take."""
ORACLE_FORMULATION = (
    "Per phase, the smallest over the compared runs of: idle power x TP x instances x the common horizon "
    "+ for every realised iteration, min over the allowed clocks of (busy - idle power) x TP x latency; "
    "SLO constraints relaxed, so it is a lower bound on every compared policy's energy."
)


def _policy_json(comparison: Comparison) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name in comparison.settings.policies:
        if name in comparison.summaries:
            out[name] = comparison.summaries[name].to_json()
        elif name == ORACLE and comparison.oracle is not None:
            oracle = comparison.oracle
            tokens = next(iter(comparison.summaries.values())).output_tokens if comparison.summaries else 0
            out[name] = {
                "energy_j": {"prefill": oracle.prefill_j, "decode": oracle.decode_j, "total": oracle.total_j},
                "joules_per_output_token": oracle.total_j / tokens if tokens else None,
                "ttft_ms_at_percentile": None,
                "tpot_ms_at_percentile": None,
                "slo_attainment": None,
                "clock_changes_per_second": None,
                "bound_from_runs": {"prefill": oracle.prefill_source, "decode": oracle.decode_source},
            }
    return out


def savings(comparison: Comparison, policy: str, baseline: str = BASELINE) -> dict[str, float] | None:
    """Energy saved by ``policy`` against ``baseline``, as fractions per phase and in total."""
    s = comparison.summaries
    if policy not in s or baseline not in s:
        return None
    a, b = s[policy], s[baseline]
    return {
        "prefill": 1.0 - a.prefill.total_j / b.prefill.total_j,
        "decode": 1.0 - a.decode.total_j / b.decode.total_j,
        "total": 1.0 - a.total_j / b.total_j,
    }


def slo_holding(comparison: Comparison) -> tuple[list[str], list[str]] | None:
    """(policies that hold the SLO, least energy first; those that do not), static-max aside."""
    base = comparison.summaries.get(BASELINE)
    if base is None:
        return None
    floor = base.slo_attainment - SLO_TOLERANCE_POINTS / 100.0
    others = [name for name in comparison.summaries if name != BASELINE]
    holding = sorted((n for n in others if comparison.summaries[n].slo_attainment >= floor),
                     key=lambda n: comparison.summaries[n].total_j)
    return holding, [n for n in others if n not in holding]


def rate_mode(comparison: Comparison) -> str:
    """How the replayed rate was chosen: "load" (x capacity), "native" or "given" (--rate R)."""
    rate = comparison.settings.rate
    return "load" if rate is None else "native" if rate == "native" else "given"


def to_json(comparison: Comparison) -> dict[str, object]:
    settings = comparison.settings
    capacity = comparison.capacity
    doc: dict[str, object] = {
        "trace": settings.trace,
        "load": settings.load,
        "requests_per_second": comparison.requests_per_second,
        "window_requests_per_second": comparison.window_requests_per_second,
        "rate": {"mode": rate_mode(comparison), "native_requests_per_second": comparison.trace.requests_per_second,
                 "replayed_requests_per_second": comparison.requests_per_second, "scale": comparison.rate_scale},
        "feasibility": None if comparison.feasibility is None else comparison.feasibility.to_json(),
        "config": {
            **comparison.cluster.describe(),
            "duration_s": settings.duration_s,
            "window_start_s": comparison.window_start_s,
            "requests": len(comparison.requests),
            "slo": {"ttft_ms": settings.slo.ttft_ms, "tpot_ms": settings.slo.tpot_ms,
                    "percentile": settings.slo.percentile},
            "clock_bounds_mhz": None if settings.bounds is None else [settings.bounds.min_mhz, settings.bounds.max_mhz],
            "seed": settings.seed,
            "slo_auto_from": comparison.auto_slo_from,
            "capacity_requests_per_second": capacity.requests_per_second if capacity else None,
            "capacity_rate_scale": capacity.rate_scale if capacity else None,
            "capacity_cached": capacity.cached if capacity else None,
            "capacity_window": None if capacity is None else {
                "requests": capacity.window_requests, "seconds": capacity.window_s,
                "at_least_requests": window_requests(settings.slo.percentile)},
            "capacity_by_prefill_instances": {str(k): v for k, v in comparison.split_capacities.items()},
            "rate_scale": comparison.rate_scale,
            "static_best_clocks_mhz": comparison.static_best_mhz,
            "oracle_formulation": ORACLE_FORMULATION,
            "clock_changes_per_second_is": "per instance (TP group), averaged over instances",
            "ttft_ends_at": ("the first token is usable at the decode instance (prefill + KV transfer)"
                             if comparison.cluster.topology == "disaggregated"
                             else "the step that computes the prompt's last chunk ends (aggregated)"),
        },
        "policies": _policy_json(comparison),
        "wall_s": comparison.wall_s,
    }
    js = savings(comparison, "joulescale")
    if js is not None:
        doc["joulescale_saving_vs_static_max"] = js
    if comparison.oracle is not None and "joulescale" in comparison.summaries:
        doc["joulescale_gap_to_oracle"] = comparison.summaries["joulescale"].total_j / comparison.oracle.total_j - 1.0
    verdict = slo_holding(comparison)
    if verdict is not None:
        doc["slo_holding"] = {
            "floor": comparison.summaries[BASELINE].slo_attainment - SLO_TOLERANCE_POINTS / 100.0,
            "by_energy": verdict[0],
            "below_floor": verdict[1],
            "cheapest_online": next((n for n in verdict[0] if n in _online()), None),
        }
    return _strict(doc)  # type: ignore[return-value]


def _strict(value: object) -> object:
    """Undefined figures (NaN, e.g. the TPOT of a window of one-token answers) as null: strict
    JSON has no NaN, and parsers other than Python's refuse the bare token."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value


def _online() -> set[str]:
    """The compared names that are online policies (the registry's role), not fixed baselines."""
    return {v.name for v, _ in twin_variants() if v.role == "online"}


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def table_rows(comparison: Comparison) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(header, one row of formatted cells per policy): the printed table and the HTML page share them."""
    base = comparison.summaries.get(BASELINE)
    header = ("policy", "prefill kJ", "decode kJ", "total kJ", "J/token", "vs max", "TTFT p ms", "TPOT p ms",
              "SLO %", "chg/s")
    rows: list[tuple[str, ...]] = []
    for name in comparison.settings.policies:
        if name in comparison.summaries:
            s = comparison.summaries[name]
            delta = f"{(s.total_j / base.total_j - 1.0) * 100:+.1f}%" if base else "-"
            rows.append((name, _fmt(s.prefill.total_j / 1e3), _fmt(s.decode.total_j / 1e3), _fmt(s.total_j / 1e3),
                         _fmt(s.joules_per_output_token, 2), delta, _fmt(s.ttft_ms_at_percentile, 0),
                         _fmt(s.tpot_ms_at_percentile, 0), _fmt(s.slo_attainment * 100, 2),
                         _fmt(s.clock_changes_per_second, 2)))
        elif name == ORACLE and comparison.oracle is not None:
            o = comparison.oracle
            tokens = base.output_tokens if base else 0
            delta = f"{(o.total_j / base.total_j - 1.0) * 100:+.1f}%" if base else "-"
            rows.append((name + " (bound)", _fmt(o.prefill_j / 1e3), _fmt(o.decode_j / 1e3), _fmt(o.total_j / 1e3),
                         _fmt(o.total_j / tokens if tokens else None, 2), delta, "-", "-", "-", "-"))
    return header, rows


def table(comparison: Comparison) -> str:
    header, rows = table_rows(comparison)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
              for r in rows]
    return "\n".join(lines)


def rate_line(comparison: Comparison) -> str:
    """Where the replayed rate comes from: the trace's own rate, the replayed one and the scale."""
    s, capacity = comparison.settings, comparison.capacity
    native = comparison.trace.requests_per_second
    replayed = comparison.requests_per_second
    mode = rate_mode(comparison)
    how = {"load": f"{_offered_load(comparison)} x static-max capacity", "native": "the trace's own rate (--rate native)",
           "given": f"--rate {replayed:g}"}[mode]
    text = (f"rate: trace {native:.3g} req/s native; replayed at {replayed:.3g} req/s = {how}; "
            f"scale {comparison.rate_scale:.3g} x native (arrival gaps divided by it)")
    if capacity is not None:
        text += (f"\ncapacity: {capacity.requests_per_second:.3g} req/s at static-max"
                 f"{' (cached)' if capacity.cached else ''}, measured on a window of {capacity.window_requests} "
                 f"requests ({capacity.window_s:.0f} s at that rate; at least {window_requests(s.slo.percentile)} "
                 f"for P{s.slo.percentile}, else --duration)")
    else:
        text += "\ncapacity: none, no rate meets the SLO (below)"
    return text


def _cluster_line(c: ClusterConfig) -> str:
    if c.topology == "aggregated":
        return (f"cluster: {c.gpus} GPUs, {c.aggregated_instances} aggregated (TP{c.profile.tensor_parallel_size}) "
                f"instances, prefill chunks and decodes in one step, {c.profile.name}")
    return (f"cluster: {c.gpus} GPUs, {c.prefill_instances} prefill (TP{c.profile_of('prefill').tensor_parallel_size}) + "
            f"{c.decode_instances} decode (TP{c.profile.tensor_parallel_size}) instances, {c.profile.name}"
            + ("" if c.prefill_profile is None else f" (prefill: {c.prefill_profile.name})")
            + f", KV over {c.kv_medium}")


def _offered_load(comparison: Comparison) -> str:
    """``load L``, or the share of this topology's capacity a shared rate is (``--topology both``)."""
    load = comparison.settings.load
    if comparison.capacity is None:
        return f"load {load:.2f}"
    ratio = comparison.rate_scale / comparison.capacity.rate_scale
    if math.isclose(ratio, load, rel_tol=1e-9):
        return f"load {ratio:.2f}"
    return f"{ratio:.2f} (the rate both topologies replay)"


def preamble(comparison: Comparison) -> str:
    s = comparison.settings
    c = comparison.cluster
    slo = s.slo
    auto = "" if comparison.auto_slo_from is None else \
        f" (auto: {AUTO_HEADROOM * 100:.0f} % over {comparison.auto_slo_from})"
    return (
        f"trace {s.trace}: {s.duration_s:.0f} s simulated window (--duration), {len(comparison.requests)} requests "
        f"({comparison.window_requests_per_second:.2f} req/s in the window)\n"
        + rate_line(comparison) + "\n"
        + _cluster_line(c)
        + f"; SLO P{slo.percentile} "
        f"TTFT {slo.ttft_ms:.0f} ms / TPOT {slo.tpot_ms:.0f} ms{auto}; policy view: {c.view}"
        + (f", {c.engine} /metrics scraped every {c.scrape_period_s * 1000:.0f} ms + "
           f"{c.scrape_delay_s * 1000:.0f} ms delay" if c.view == "metrics" else f" (engine hook, {c.engine})")
        + ("" if comparison.feasibility is None else "\n" + comparison.feasibility.text())
    )


def conclusion(comparison: Comparison) -> str:
    js = savings(comparison, "joulescale")
    if js is None:
        return "(include static-max and joulescale in --policies for a conclusion)"
    ours = comparison.summaries["joulescale"]
    base = comparison.summaries[BASELINE]
    text = (f"joulescale uses {js['total'] * 100:.1f}% less energy than static-max (prefill "
            f"{js['prefill'] * 100:.1f}%, decode {js['decode'] * 100:.1f}%) at {ours.slo_attainment * 100:.2f}% SLO "
            f"attainment (static-max {base.slo_attainment * 100:.2f}%)")
    if comparison.oracle is not None:
        text += f"; it is {(ours.total_j / comparison.oracle.total_j - 1.0) * 100:.1f}% above the oracle bound"
    return text + "."


def slo_verdict(comparison: Comparison) -> str:
    """One line under the table: which policy saves the most while holding the SLO."""
    verdict = slo_holding(comparison)
    if verdict is None or not (verdict[0] or verdict[1]):
        return ""
    holding, short = verdict
    s = comparison.summaries
    text = f"Within {SLO_TOLERANCE_POINTS} points of static-max's SLO attainment, "
    if holding:
        text += f"the least energy is {holding[0]}'s ({s[holding[0]].total_j / 1e3:.1f} kJ)"
    else:
        text += "no adaptive policy holds"
    if short:
        text += "; below it: " + ", ".join(
            f"{n} ({s[n].total_j / 1e3:.1f} kJ at {s[n].slo_attainment * 100:.2f}%)" for n in short)
    return text + "."


__all__ = ["BASELINE", "ORACLE_FORMULATION", "SLO_TOLERANCE_POINTS", "conclusion", "preamble", "rate_line", "rate_mode", "savings", "slo_holding",
           "slo_verdict", "table", "table_rows", "to_json"]
