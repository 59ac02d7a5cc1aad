"""docs/physics.md states the shipped profiles' numbers and what the physics makes of them: both
are checked against the profile files and the physics functions, so the page cannot drift."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from joulescale.profiles import load_profile
from joulescale.profiles import physics as ph
from joulescale.profiles.model import GpuProfile

ROOT = Path(__file__).resolve().parents[3]
PAGE = (ROOT / "docs" / "physics.md").read_text(encoding="utf-8")
COLUMNS = ("h100-sxm-llama-70b-tp8", "h100-sxm-llama-70b-tp4", "h100-sxm-llama-8b-tp1", "a100-sxm4-80gb-llama-8b-tp1")


def _cells(row: str) -> list[str]:
    for line in PAGE.splitlines():
        if line.startswith(f"| {row} |"):
            return [cell.strip() for cell in line.strip("|").split("|")[1:]]
    raise AssertionError(f"docs/physics.md has no table row {row!r}")


def _numbers(cell: str) -> list[float]:
    return [float(text) for text in re.findall(r"[0-9][0-9.e+-]*", cell)]


ROWS: dict[str, Callable[[GpuProfile], list[float]]] = {
    "prefill base_ms": lambda p: [p.prefill.latency.base_ms],
    "prefill per_token_ms": lambda p: [p.prefill.latency.per_token_ms],
    "prefill per_token_squared_ms": lambda p: [p.prefill.latency.per_token_squared_ms],
    "decode base_ms": lambda p: [p.decode.latency.base_ms],
    "decode per_sequence_ms": lambda p: [p.decode.latency.per_sequence_ms],
    "decode per_context_token_ms": lambda p: [p.decode.latency.per_context_token_ms],
    "prefill floor / fmax watts": lambda p: [p.prefill.power.floor_watts, p.prefill.power.fmax_watts],
    "decode floor / fmax watts": lambda p: [p.decode.power.floor_watts, p.decode.power.fmax_watts],
    "gamma prefill / decode": lambda p: [p.prefill.power.gamma, p.decode.power.gamma],
    "idle watts": lambda p: [p.idle_power_watts],
    "power limit watts": lambda p: [p.power_limit_watts],
    "KV capacity tokens": lambda p: [p.kv_capacity_tokens],
    "step overhead fixed / per-sequence ms": lambda p: [] if p.step_overhead is None else [
        p.step_overhead.fixed_ms, p.step_overhead.per_sequence_ms],
    "step overhead GPU busy share": lambda p: [] if p.step_overhead is None else [p.step_overhead.gpu_busy_share],
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_the_table_of_shipped_numbers_equals_the_profile_files(row: str) -> None:
    cells = _cells(row)
    assert len(cells) == len(COLUMNS)
    for name, cell in zip(COLUMNS, cells, strict=True):
        assert _numbers(cell) == pytest.approx(ROWS[row](load_profile(name)), rel=1e-9), (row, name)


def _as_rounded(cell: str, actual: list[float]) -> None:
    """Each stated number equals the computed one rounded to the digits the page shows."""
    stated = re.findall(r"[0-9][0-9.]*", cell)[: len(actual)]
    assert len(stated) == len(actual), cell
    for text, value in zip(stated, actual, strict=True):
        decimals = len(text.split(".")[1]) if "." in text else 0
        assert abs(float(text) - value) <= 0.5 * 10**-decimals + 1e-9, (cell, value)


def _least(profile: GpuProfile, energy: Callable[[int], float]) -> tuple[int, float]:
    return min(((f, energy(f)) for f in profile.supported_sm_clocks_mhz), key=lambda pair: pair[1])


def test_the_stated_energy_minima_are_what_the_physics_computes() -> None:
    tp4 = load_profile("h100-sxm-llama-70b-tp4")
    tp, idle = tp4.tensor_parallel_size, tp4.idle_power_watts

    def prefill_total(f: int) -> float:
        return ph.iteration_energy_j(tp4, "prefill", ph.prefill_latency_s(tp4, [2048], f), f, 1)

    def prefill_excess(f: int) -> float:
        return tp * (ph.busy_power_watts(tp4, "prefill", f, 1) - idle) * ph.prefill_latency_s(tp4, [2048], f)

    def decode_total(f: int) -> float:
        return ph.iteration_energy_j(tp4, "decode", ph.decode_latency_s(tp4, 64, 76_800, f), f, 64)

    def decode_excess(f: int) -> float:
        return tp * (ph.busy_power_watts(tp4, "decode", f, 64) - idle) * ph.decode_latency_s(tp4, 64, 76_800, f)

    prefill_row = _cells("prefill, one 2048-token prompt")
    decode_row = _cells("decode, B = 64, K = 76,800")
    def prefill_s(f: int) -> float:
        return ph.prefill_latency_s(tp4, [2048], f)

    def decode_s(f: int) -> float:
        return ph.decode_latency_s(tp4, 64, 76_800, f)

    cases = (
        (prefill_row, prefill_excess, prefill_total, prefill_s),
        (decode_row, decode_excess, decode_total, decode_s),
    )
    for row, excess, total, latency in cases:
        (f_excess, j_excess), (f_total, j_total) = _least(tp4, excess), _least(tp4, total)
        _as_rounded(row[0], [f_excess, j_excess])
        _as_rounded(row[1], [f_total, j_total])
        fmax = tp4.max_sm_clock_mhz
        _as_rounded(row[2], [excess(fmax), total(fmax), 1000 * latency(fmax)])


def test_the_stated_power_cap_clock_and_slowdown_are_what_the_physics_computes() -> None:
    tp4 = load_profile("h100-sxm-llama-70b-tp4")
    capped = tp4.model_copy(update={"power_limit_watts": 0.7 * tp4.power_limit_watts})
    clock = ph.effective_clock_mhz(capped, "prefill", tp4.max_sm_clock_mhz)
    slowdown = ph.prefill_latency_s(capped, [2048], 1980) / ph.prefill_latency_s(tp4, [2048], 1980)
    text = " ".join(PAGE.split())
    stated_clock = re.search(r"limit lowered to 70 % \(490 W\), prefill runs at about (\d+) MHz", text)
    stated_slowdown = re.search(r"instead of 1980 and takes ([0-9.]+)x as long", text)
    assert stated_clock is not None
    assert stated_slowdown is not None
    assert round(clock) == int(stated_clock.group(1))
    assert round(slowdown, 2) == float(stated_slowdown.group(1))
    assert ph.decode_latency_s(capped, 32, 38_400, 1980) == ph.decode_latency_s(tp4, 32, 38_400, 1980)
    decode_slowdown = ph.decode_latency_s(capped, 256, 307_200, 1980) / ph.decode_latency_s(tp4, 256, 307_200, 1980)
    stated_decode = re.search(r"256 sequences take ([0-9.]+)x as long", text)
    assert stated_decode is not None
    assert round(decode_slowdown, 2) == float(stated_decode.group(1))


def _series(pattern: str) -> list[str]:
    match = re.search(pattern, " ".join(PAGE.split()))
    assert match is not None, pattern
    return match.group(1).split("/")


def _matches(stated: list[str], computed_ms: list[float]) -> None:
    _as_rounded(" ".join(stated), computed_ms)


def test_the_profile_figures_set_against_public_measurements_are_what_the_physics_computes() -> None:
    tp8, tp4 = load_profile("h100-sxm-llama-70b-tp8"), load_profile("h100-sxm-llama-70b-tp4")
    prompts = (512, 1024, 2048, 4096, 8192)
    _matches(_series(r"the TP8 profile gives ([0-9/]+) ms for those prompts"),
             [1000 * ph.prefill_latency_s(tp8, [n], 1980) for n in prompts])
    _matches(_series(r"ms for those prompts and ([0-9./]+) ms for those batches"),
             [1000 * ph.decode_latency_s(tp8, b, b * 1000, 1980) for b in (1, 64)])
    # Against the kernel database: the kernels' time, without the step overhead it does not time.
    _matches(_series(r"where the TP4 profile gives ([0-9/]+) ms \(within 7 %"),
             [1000 * ph.prefill_gpu_s(tp4, n, n * n, 1980, 1) for n in prompts])
    _matches(_series(r"where the TP4 profile gives ([0-9./]+) ms \(within 2 %"),
             [1000 * ph.decode_gpu_s(tp4, b, b * 1024, 1980) for b in (1, 16, 64, 128, 256)])
