"""`joulescale profile generate` against AIConfigurator's real database (the profilegen extra).

The generated profile must load through the strict loader, report its fit error, and predict
the database's own estimates at points outside the fitting grid within that reported error.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from joulescale.cli import main
from joulescale.profiles import load_profile, load_profile_file
from joulescale.profiles.architecture import read_architecture
from joulescale.profiles.generate import DECODE_GRID, PREFILL_GRID, fit_nonnegative, profile_ms
from joulescale.profiles.hardware import hardware_of, load_hardware
from joulescale.profiles.model import GpuProfile
from joulescale.profiles.perfdb import AiConfigurator

ROOT = Path(__file__).resolve().parents[3]
SOURCES = ROOT / "joulescale" / "profiles" / "sources"
H200_HARDWARE = SOURCES / "h200-sxm-hardware.yaml"
_FIT_LINE = re.compile(r"fit error at f_max: (prefill|decode) median ([\d.]+)%, max ([\d.]+)% over (\d+) points")

OFF_GRID = {
    "prefill": [(1, 3000), (1, 6000), (3, 1500), (2, 700)],
    "decode": [(16, 1000), (96, 4000), (200, 1500), (4, 6000)],
}
"""(batch, tokens each) inside the grid's range but on none of its points."""


@dataclass(frozen=True)
class Run:
    profile: GpuProfile
    output: str
    max_error: dict[str, float]
    median_error: dict[str, float]


def _generate(tmp: Path, model: str, tp: int, shipped: str, extra: list[str]) -> Run:
    out = io.StringIO()
    err = io.StringIO()
    target = tmp / f"{shipped}.yaml"
    argv = ["profile", "generate", "--model", str(SOURCES / model), "--system", "h100_sxm", "--tp", str(tp),
            "--engine", "vllm", "--power-from", shipped, "-o", str(target), *extra]
    assert main(argv, out=out, err=err) == 0, err.getvalue()
    text = out.getvalue()
    found = {m[0]: m for m in _FIT_LINE.findall(text)}
    assert set(found) == {"prefill", "decode"}, text
    return Run(load_profile_file(target), text, {k: float(v[2]) / 100 for k, v in found.items()},
               {k: float(v[1]) / 100 for k, v in found.items()})


@pytest.fixture(scope="module")
def llama70b_tp4(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _generate(tmp_path_factory.mktemp("gen70"), "llama-3.1-70b", 4, "h100-sxm-llama-70b-tp4",
                     ["--model-name", "meta-llama/Llama-3.3-70B-Instruct"])


@pytest.fixture(scope="module")
def llama8b_tp1(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _generate(tmp_path_factory.mktemp("gen8"), "llama-3.1-8b", 1, "h100-sxm-llama-8b-tp1", [])


@pytest.mark.parametrize("run_name", ["llama70b_tp4", "llama8b_tp1"])
def test_generated_profile_predicts_the_database_off_the_grid(run_name: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(run_name)
    print(run.output)  # the fit errors, for the record (pytest -s)
    database = AiConfigurator(SOURCES / ("llama-3.1-70b" if "70b" in run_name else "llama-3.1-8b"), "h100_sxm",
                              "vllm", run.profile.tensor_parallel_size)
    try:
        for phase, points in OFF_GRID.items():
            grid = PREFILL_GRID if phase == "prefill" else DECODE_GRID
            assert not set(points) & set(grid)
            for batch, tokens in points:
                expected = (database.prefill_ms if phase == "prefill" else database.decode_ms)(batch, tokens)
                assert expected is not None
                got = profile_ms(run.profile, phase, batch, tokens)
                assert abs(got - expected) / expected <= run.max_error[phase], (phase, batch, tokens, got, expected)
    finally:
        database.close()


@pytest.mark.parametrize(("run_name", "shipped"), [("llama70b_tp4", "h100-sxm-llama-70b-tp4"),
                                                   ("llama8b_tp1", "h100-sxm-llama-8b-tp1")])
def test_generated_profile_records_its_database_and_keeps_the_measured_hardware(
        run_name: str, shipped: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(run_name)
    base = load_profile(shipped)
    profile = run.profile
    assert (profile.gpu_product, profile.model, profile.tensor_parallel_size) == (
        base.gpu_product, base.model, base.tensor_parallel_size)
    assert profile.prefill.power == base.prefill.power
    assert profile.decode.power == base.decode.power
    assert profile.step_overhead == base.step_overhead  # taken with the power (--power-from)
    assert profile.sm_clocks == base.sm_clocks
    assert profile.clock_settle_ms == base.clock_settle_ms
    assert (profile.kv_bytes_per_token, profile.kv_capacity_tokens) == (base.kv_bytes_per_token,
                                                                         base.kv_capacity_tokens)
    latency = [s for s in profile.source if s.fields == "prefill.latency, decode.latency"]
    assert len(latency) == 1
    assert "AIConfigurator 0.12.0" in latency[0].citation
    assert "h100_sxm, vllm 0.24.0" in latency[0].citation
    assert "joulescale profile generate" in latency[0].citation
    assert "Fit error" in latency[0].citation
    assert all("latency" not in s.fields for s in profile.source if s is not latency[0])
    assert 0 <= run.median_error["prefill"] <= run.max_error["prefill"] < 1
    assert 0 <= run.median_error["decode"] <= run.max_error["decode"] < 1


def test_weights_and_kv_bytes_from_config_match_the_published_parameter_counts() -> None:
    big, small = read_architecture(SOURCES / "llama-3.1-70b"), read_architecture(SOURCES / "llama-3.1-8b/config.json")
    assert (big.parameters, big.kv_bytes_per_token) == (70_553_706_496, 80 * 8 * 128 * 2 * 2)
    assert (small.parameters, small.kv_bytes_per_token) == (8_030_261_248, 32 * 8 * 128 * 2 * 2)


def test_fit_recovers_nonnegative_coefficients_and_never_goes_negative() -> None:
    rows = [(1.0, n, n * n) for n in (128, 512, 2048, 8192, 16384)]
    truth = (12.0, 0.05, 1e-6)
    fitted = fit_nonnegative(rows, [sum(c * x for c, x in zip(truth, r, strict=True)) for r in rows])
    assert fitted == pytest.approx(truth, rel=1e-6)
    # Data that falls with the length would need a negative slope: the fit clamps it at zero.
    assert min(fit_nonnegative(rows, [100.0 - n / 1000 for n in (128, 512, 2048, 8192, 16384)])) >= 0


def test_hardware_drops_latency_sources_and_the_h200_file_loads_strictly(tmp_path: Path) -> None:
    hardware = hardware_of(load_profile("h100-sxm-llama-70b-tp4"))
    assert hardware.source
    assert all("latency" not in s.fields for s in hardware.source)
    h200 = load_hardware(str(H200_HARDWARE))
    assert (h200.gpu_product, h200.sm_clocks.max_mhz, h200.clock_settle_ms) == ("NVIDIA-H200", 1980, 75)
    bad = tmp_path / "hw.yaml"
    bad.write_text(H200_HARDWARE.read_text(encoding="utf-8").replace("clock_settle_ms: 75", "clock_settle: 75"),
                   encoding="utf-8")
    with pytest.raises(ValueError, match="clock_settle"):
        load_hardware(str(bad))


def test_power_from_is_required_for_a_profile_that_is_not_shipped(tmp_path: Path) -> None:
    err = io.StringIO()
    argv = ["profile", "generate", "--model", str(SOURCES / "llama-3.1-8b"), "--system", "h100_sxm", "--tp", "1",
            "-o", str(tmp_path / "mine.yaml")]
    assert main(argv, out=io.StringIO(), err=err) == 2
    assert "--power-from" in err.getvalue()
    assert not (tmp_path / "mine.yaml").exists()


GENERATED_SHIPPED = ["h100-sxm-llama-70b-tp4", "h100-sxm-llama-70b-tp2", "h200-sxm-llama-70b-tp2", "h200-sxm-llama-70b-tp4",
                     "h200-sxm-llama-8b-tp1"]
CITED = ["prefill.latency", "decode.latency", "prefill.power", "decode.power", "prefill.clock_sensitivity",
         "decode.clock_sensitivity", "sm_clocks", "memory_clock_mhz", "power_limit_watts", "idle_power_watts",
         "clock_settle_ms", "gpu_memory_mib", "kv_bytes_per_token", "kv_capacity_tokens"]


@pytest.mark.parametrize("name", GENERATED_SHIPPED)
def test_every_field_of_a_generated_shipped_profile_cites_a_source(name: str) -> None:
    profile = load_profile(name)
    cited = {f.strip() for s in profile.source for f in s.fields.split(",")}
    for field in CITED:
        # "clock_sensitivity" alone backs both phases' sensitivities; "decode.power.fmax_watts, ..." backs
        # decode.power field by field
        assert field in cited or field.split(".")[-1] in cited or any(c.startswith(field + ".") for c in cited), (
            name, field)
    if profile.step_overhead is not None:
        assert "step_overhead" in cited, name
    latency = next(s for s in profile.source if s.fields == "prefill.latency, decode.latency")
    assert "AIConfigurator 0.12.0" in latency.citation
    assert "vllm 0.24.0" in latency.citation
    assert f"-o joulescale/profiles/data/{name}.yaml" in latency.citation
