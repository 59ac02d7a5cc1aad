"""``joulescale plan`` on the embedded default (azure-conv, H100 Llama-70B TP2/TP4/TP8): a sweep, its
JSON, and an emitted service that the API models accept."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from joulescale.api import EnergyAwareLLMService
from joulescale.cli import main
from joulescale.cli_plan import gpu_counts
from joulescale.twin.traces import load_trace


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, dict[str, Any], dict[str, Any]]:
    folder = tmp_path_factory.mktemp("plan")
    out = io.StringIO()
    code = main(["plan", "--gpus", "8,12,16", "--cache-dir", str(folder / "cache"), "--json", str(folder / "p.json"),
                 "--emit-service", str(folder / "svc.yaml")], out=out)
    return (code, out.getvalue(), json.loads((folder / "p.json").read_text()),
            yaml.safe_load((folder / "svc.yaml").read_text()))


def test_the_sweep_names_the_smallest_budget_with_a_placement(sweep: tuple[int, str, dict[str, Any], dict[str, Any]]) -> None:
    code, text, document, _ = sweep
    assert code == 0
    feasible = [p["gpus"] for p in document["plans"] if p["feasible"]]
    assert feasible
    assert document["smallest_gpus"] == min(feasible)
    assert f"smallest cluster meeting the SLO at this rate: {min(feasible)} GPUs" in text
    for plan in document["plans"]:
        if plan["gpus"] < min(feasible):
            assert plan["binding"] == "gpu-budget"


def test_each_plan_fits_its_budget_keeps_the_margin_and_runs_one_shape_per_role(
        sweep: tuple[int, str, dict[str, Any], dict[str, Any]]) -> None:
    _, _, document, _ = sweep
    trace = load_trace("azure-conv")
    assert document["rate_rps"] == pytest.approx(trace.requests_per_second)
    for plan in (p for p in document["plans"] if p["feasible"]):
        roles = plan["roles"]
        used = sum(r["replicas"] * r["tensor_parallel_size"] for role in roles.values() for r in role)
        assert used == plan["gpus_used"] <= plan["gpus"]
        assert all(len(role) == 1 for role in roles.values())
        assert all(h >= document["margin"] - 1e-9 for h in plan["headroom"].values())
        tokens_per_s = document["rate_rps"] * document["mean_output_tokens"]
        assert plan["joules_per_output_token"] == pytest.approx(plan["power_watts"] / tokens_per_s)
    # A larger budget never needs more power: the smaller one's placement is still allowed.
    powers = [p["power_watts"] for p in document["plans"] if p["feasible"]]
    assert powers == sorted(powers, reverse=True)


def test_the_emitted_service_is_the_smallest_plan_and_validates(
        sweep: tuple[int, str, dict[str, Any], dict[str, Any]]) -> None:
    _, _, document, service = sweep
    EnergyAwareLLMService.model_validate(service)
    smallest = next(p for p in document["plans"] if p["gpus"] == document["smallest_gpus"])
    for phase in ("prefill", "decode"):
        (role,) = smallest["roles"][phase]
        assert service["spec"][phase]["replicas"] == role["replicas"]
        assert service["spec"][phase]["tensorParallelSize"] == role["tensor_parallel_size"]
        annotation = service["metadata"]["annotations"][f"joulescale.io/planned-base-clock-mhz-{phase}"]
        assert annotation == str(role["base_clock_mhz"])
    assert service["spec"]["slo"] == {"ttftMs": 600, "tpotMs": 100, "percentile": 99}


def test_no_budget_meeting_the_slo_exits_1_and_writes_no_service(tmp_path: Path,
                                                                  sweep: tuple[int, str, dict[str, Any], dict[str, Any]]) -> None:
    err, out = io.StringIO(), io.StringIO()
    code = main(["plan", "--gpus", "4", "--profile", "h100-sxm-llama-70b-tp4", "--cache-dir", str(tmp_path),
                 "--emit-service", str(tmp_path / "svc.yaml")], out=out, err=err)
    assert code == 2
    assert "no budget meets the SLO" in err.getvalue()
    assert "4 GPUs: no placement" in out.getvalue()
    assert not (tmp_path / "svc.yaml").exists()


@pytest.mark.parametrize("rows", [["2023-11-16 18:15:46.6805900,100,3"],
                                  ["2023-11-16 18:15:46.6805900,100,3", "2023-11-16 18:15:46.6805900,200,5"]])
def test_a_trace_without_a_rate_of_its_own_is_refused_with_a_way_out(tmp_path: Path, rows: list[str]) -> None:
    """One request, or every request at one instant, has no mean rate to plan for: a clear error
    naming --rate, not a division by zero."""
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    err = io.StringIO()
    code = main(["plan", "--trace", str(trace), "--gpus", "16", "--cache-dir", str(tmp_path)], out=io.StringIO(), err=err)
    assert code == 2
    assert "no rate of its own" in err.getvalue()
    assert "--rate" in err.getvalue()


@pytest.mark.parametrize(("text", "expected"), [("16", [16]), ("8,12,16", [8, 12, 16]), ("8-11", [8, 9, 10, 11]),
                                                ("12, 8-9", [8, 9, 12])])
def test_gpu_counts_parse_lists_and_ranges(text: str, expected: list[int]) -> None:
    assert gpu_counts(text) == expected


@pytest.mark.parametrize("text", ["0", "9-8", "", "1-100", "x"])
def test_gpu_counts_refuse_empty_zero_reversed_and_huge(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        gpu_counts(text)
