from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from joulescale.cli import main
from joulescale.control.policy import Slo
from tests.unit.hostile_cli import Outcome, assert_refused, run_all, run_cli


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_twin_compare_prints_the_table_and_writes_json_and_a_report(tmp_path: Path) -> None:
    code, out, err = _run(
        "twin",
        "compare",
        "--trace",
        "azure-code",
        "--duration",
        "20",
        "--prefill-instances",
        "3",
        "--policies",
        "static-max,joulescale,oracle",
        "--no-cache",
        "--json",
        str(tmp_path / "c.json"),
        "--report",
        str(tmp_path / "rep"),
    )
    assert code == 0, err
    assert "20 s simulated window" in out
    assert "joulescale uses" in out
    assert "oracle (bound)" in out
    doc = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    assert doc["trace"] == "azure-code"
    assert set(doc["policies"]) == {"static-max", "joulescale", "oracle"}
    assert doc["config"]["view"] == "metrics"
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert pngs == ["clock_over_time.png", "energy_by_phase.png", "tpot_cdf.png", "ttft_cdf.png"]


def test_a_malformed_trace_file_exits_2_naming_the_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,5,5\n2023-11-16 18:15:47.1,x,5\n",
        encoding="utf-8",
    )
    code, out, err = _run("twin", "compare", "--trace", str(path), "--no-cache")
    assert code == 2
    assert err.splitlines() == [f"joulescale: error: trace {path}:3: ContextTokens must be a whole number of tokens, "
                                "got 'x'"]
    assert out == ""


def test_an_impossible_split_is_a_usage_error() -> None:
    code, _, err = _run("twin", "compare", "--gpus", "4", "--no-cache")
    assert code == 2
    assert "at least 2" in err


# --- hostile arguments: every one is refused at once, with status 2 and one line naming it ---

HOSTILE_ARGUMENTS: list[tuple[list[str], str]] = [
    (["--duration", "inf"], "--duration"),
    (["--duration", "nan"], "--duration"),
    (["--duration", "1e309"], "--duration"),
    (["--duration", "-5"], "--duration"),
    (["--duration", "0"], "--duration"),
    (["--duration", "100000"], "--duration"),
    (["--duration", "5e"], "--duration"),
    (["--gpus", "100000"], "--gpus"),
    (["--gpus", "0"], "--gpus"),
    (["--gpus", "-16"], "--gpus"),
    (["--gpus", "1.5"], "--gpus"),
    (["--gpus", str(2**64)], "--gpus"),
    (["--gpus", "\u0661\u0666"], "--gpus"),  # Arabic-Indic digits: int() would take them
    (["--gpus", "1_6"], "--gpus"),
    (["--gpus", "true"], "--gpus"),
    (["--load", "0"], "--load"),
    (["--load", "-0.5"], "--load"),
    (["--load", "1e9"], "--load"),
    (["--load", "nan"], "--load"),
    (["--power-limit-watts", "0"], "--power-limit-watts"),
    (["--power-limit-watts", "-700"], "--power-limit-watts"),
    (["--power-limit-watts", "10"], "--power-limit-watts"),  # below the profile's idle power
    (["--power-limit-watts", "infinity"], "--power-limit-watts"),
    (["--clock-settle-ms", "-5"], "--clock-settle-ms"),
    (["--clock-settle-ms", "inf"], "--clock-settle-ms"),
    (["--scrape-period-ms", "nan"], "--scrape-period-ms"),
    (["--scrape-period-ms", "0"], "--scrape-period-ms"),
    (["--scrape-period-ms", "1e-9"], "--scrape-period-ms"),
    (["--scrape-delay-ms", "-1"], "--scrape-delay-ms"),
    (["--slo-ttft-ms", "nan"], "--slo-ttft-ms"),
    (["--slo-ttft-ms", "0"], "--slo-ttft-ms"),
    (["--slo-tpot-ms", "-100"], "--slo-tpot-ms"),
    (["--percentile", "0"], "--percentile"),
    (["--percentile", "101"], "--percentile"),
    (["--seed", "-1"], "--seed"),
    (["--prefill-instances", "0"], "--prefill-instances"),
    (["--prefill-instances", "100000"], "--prefill-instances"),
    (["--prefill-instances", "9"], "--prefill-instances"),  # 16 GPUs hold at most 3 TP4 prefill
    (["--min-mhz", "5000", "--max-mhz", "6000"], "--min-mhz/--max-mhz"),
    (["--min-mhz", "2000", "--max-mhz", "1000"], "--min-mhz/--max-mhz"),
    (["--max-mhz", "0"], "--max-mhz"),
    (["--min-mhz", "nan"], "--min-mhz"),
    (["--gpus", "1024"], "run too large"),  # the work bound: 255 capacity searches of 1024 GPUs
    (["--gpus", "256", "--duration", "86400", "--prefill-instances", "1"], "run too large"),
    (["--policies", "nosuch"], "--policies"),
    (["--view", "nosuch"], "--view"),
    (["--engine", "tgi"], "--engine"),
    (["--frobnicate"], "--frobnicate"),
    (["--gpus", "4"], "argument --gpus: 4 GPUs cannot hold"),
    (["--profile", "/dev/zero"], "argument --profile: profile file /dev/zero: not a regular file"),
    (["--profile", "nosuch"], "argument --profile: unknown profile"),
    (["--prefill-profile", "nosuch"], "argument --prefill-profile: unknown profile"),
    (["--load", "2.0000001"], "got 2.0000001"),
    (["--trace", "a\nb"], "a\\nb"),  # a newline in a name must not split the one line
]


@pytest.fixture(scope="module")
def hostile_outcomes() -> list[Outcome]:
    return run_all([["twin", "compare", "--no-cache", *argv] for argv, _ in HOSTILE_ARGUMENTS])


@pytest.mark.parametrize("case", range(len(HOSTILE_ARGUMENTS)), ids=[" ".join(a) for a, _ in HOSTILE_ARGUMENTS])
def test_a_hostile_argument_is_refused_at_once_in_one_line_naming_it(case: int, hostile_outcomes: list[Outcome]) -> None:
    assert_refused(hostile_outcomes[case], HOSTILE_ARGUMENTS[case][1])


@pytest.mark.parametrize("argv", [[], ["twin"], ["twin", "frobnicate"], ["nosuch"]])
def test_a_missing_or_unknown_command_is_one_line_with_status_2(argv: list[str]) -> None:
    assert_refused(run_cli(*argv), "error")


def _output_cases(tmp: Path) -> list[tuple[list[str], str]]:
    a_file = tmp / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    fifo = tmp / "pipe"
    os.mkfifo(fifo)
    return [
        (["--json", str(tmp)], "--json"),  # a directory
        (["--json", str(fifo)], "--json"),  # writing would block until a reader comes
        (["--json", "/dev/zero"], "--json"),
        (["--json", str(a_file / "c.json")], "--json"),  # the parent is a file
        (["--json", "/proc/joulescale/c.json"], "--json"),  # nothing can be created in /proc
        (["--json", ""], "--json"),
        (["--report", str(a_file)], "--report"),  # an existing file
        (["--report", str(fifo)], "--report"),
        (["--report", str(a_file / "rep")], "--report"),
        (["--report", "/proc/joulescale-report"], "--report"),
    ]


def test_unusable_output_paths_are_refused_before_any_simulation(tmp_path: Path) -> None:
    cases = _output_cases(tmp_path)
    for (_, named), outcome in zip(cases, run_all([["twin", "compare", "--no-cache", *a] for a, _ in cases]),
                                   strict=True):
        assert_refused(outcome, named)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "pipe"]  # the probes left nothing


def test_good_arguments_at_their_bounds_and_a_bom_crlf_trace_still_run(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"  # as Excel saves it: a byte order mark and CRLF line ends
    rows = "".join(f"2023-11-16 18:15:{i // 4:02d}.{(i % 4) * 25:02d},300,20\r\n" for i in range(40))
    trace.write_bytes(b"\xef\xbb\xbf" + ("TIMESTAMP,ContextTokens,GeneratedTokens\r\n" + rows).encode())
    result = run_cli("twin", "compare", "--no-cache", "--trace", str(trace), "--profile", "h100-sxm-llama-8b-tp1",
                     "--gpus", "2", "--duration", "5", "--policies", "static-max", "--load", "2",
                     "--scrape-period-ms", "1", "--clock-settle-ms", "0", "--percentile", "100",
                     "--power-limit-watts", "700", "--min-mhz", "1", "--max-mhz", "10000",
                     "--json", str(tmp_path / "new" / "c.json"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "new" / "c.json").read_text(encoding="utf-8"))["policies"].keys() == {"static-max"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("duration_s", float("nan")), ("duration_s", float("inf")), ("gpus", 100_000), ("load", float("nan")),
     ("scrape_period_s", float("nan")), ("clock_settle_s", -0.005), ("power_limit_watts", 0.0),
     ("slo", Slo(float("nan"), 100.0, 99)), ("seed", -1), ("gpus", True), ("engine", "tgi")],
)
def test_library_callers_are_refused_like_the_cli_naming_the_setting(field: str, value: object) -> None:
    from joulescale.twin.limits import SettingError
    from joulescale.twin.settings import CompareSettings

    with pytest.raises(SettingError) as caught:
        CompareSettings(**{field: value})  # type: ignore[arg-type]
    assert caught.value.setting.split(".")[0] == field


def test_a_report_without_matplotlib_names_the_extra_before_any_simulation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """matplotlib is the `twin` extra, not a core dependency: without it, --report says so."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a)
    )
    code, out, err = _run("twin", "compare", "--no-cache", "--report", str(tmp_path / "r"))
    assert code == 2
    assert "--report" in err
    assert "joulescale[twin]" in err
    assert out == ""
    assert not (tmp_path / "r").exists()
