from __future__ import annotations

import io
import json
from pathlib import Path

from joulescale.cli import main


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
    assert "line 3" in err
    assert "joulescale: error:" in err
    assert out == ""


def test_an_impossible_split_is_a_usage_error() -> None:
    code, _, err = _run("twin", "compare", "--gpus", "4", "--no-cache")
    assert code == 2
    assert "at least 2" in err
