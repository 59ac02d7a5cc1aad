"""Edge cases of one run and of the CLI on a tiny window: one request, one output token, a
prompt over the token budget, requests at one instant, and ``joulescale twin compare --json``
as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from joulescale.control.policy import Slo
from joulescale.profiles import physics
from joulescale.twin.kv_transfer import kv_medium
from joulescale.twin.metrics import summarise
from joulescale.twin.simulator import simulate
from joulescale.twin.traces import TraceRequest

from .helpers import fixed_control, profile, small_cluster

TOP = profile().max_sm_clock_mhz
SLO = Slo(600.0, 100.0, 99)


def _transfer_s(prompt: int) -> float:
    return kv_medium("infiniband").transfer_s(prompt, profile().kv_bytes_per_token)


def test_one_request_takes_its_prefill_its_transfer_and_one_decode_step_per_token() -> None:
    p = profile()
    run = simulate([TraceRequest(1.0, 2000, 5)], small_cluster(1, 1), fixed_control(TOP, TOP))
    request = run.requests[0]
    prefill_s = physics.prefill_latency_s(p, [2000], TOP)
    assert request.prefill_done_s == pytest.approx(1.0 + prefill_s)
    assert request.ttft_s == pytest.approx(prefill_s + _transfer_s(2000))
    decode_s = request.finish_s - request.first_token_s
    # four decode steps of a batch of one, over a context growing from the prompt (whether a step
    # counts the token it generates changes the sum by 2e-6 of it; a step more or less by 25 %)
    assert decode_s == pytest.approx(sum(physics.decode_latency_s(p, 1, 2000 + k, TOP) for k in range(1, 5)), rel=1e-5)
    assert run.end_s == request.finish_s
    summary = summarise(run, SLO)
    assert summary.finished == summary.requests == 1
    assert summary.output_tokens == 5
    assert summary.slo_attainment == 1.0


def test_a_request_of_one_output_token_finishes_when_its_kv_lands_and_never_decodes() -> None:
    run = simulate([TraceRequest(1.0, 700, 1)], small_cluster(1, 1), fixed_control(TOP, TOP))
    request = run.requests[0]
    assert request.finish_s == request.first_token_s
    assert request.tpot_s == 0.0
    assert run.decode[0].gpu.busy_s == 0.0  # nothing to generate: the decode GPUs idle all along
    summary = summarise(run, SLO)
    assert summary.output_tokens == 1
    assert summary.decode.busy_j == 0.0
    assert summary.tpot_attainment == 1.0


def test_a_prompt_longer_than_the_token_budget_is_still_served_whole() -> None:
    """Whether it runs alone or in chunks, all its prompt tokens are prefilled before its first
    token, and no shorter prompt behind it is starved."""
    p = profile()
    cluster = small_cluster(1, 1, prefill_token_budget=1024)
    long_prompt = 5000
    run = simulate([TraceRequest(1.0, long_prompt, 3), TraceRequest(1.001, 100, 3)], cluster, fixed_control(TOP, TOP))
    long, short = run.requests
    assert all(r.finish_s > r.first_token_s > r.prefill_done_s > r.arrival_s for r in run.requests)
    # at least the compute of its tokens, at the fastest batching the physics allows
    assert long.prefill_done_s - long.arrival_s >= physics.prefill_latency_s(p, [1024] * 4 + [904], TOP) * (1 - 1e-9)
    assert short.prefill_done_s <= long.prefill_done_s + physics.prefill_latency_s(p, [100], TOP) * 2
    assert run.prefill[0].gpu.busy_s > 0


def test_requests_arriving_at_one_instant_are_all_served() -> None:
    window = [TraceRequest(1.0, 300 + 10 * k, 4) for k in range(50)]
    run = simulate(window, small_cluster(2, 1), fixed_control(TOP, TOP))
    assert all(r.finish_s > r.arrival_s for r in run.requests)
    assert summarise(run, SLO).finished == 50
    # batched, they finish sooner than one after another
    serial_s = sum(physics.prefill_latency_s(profile(), [r.prompt_tokens], TOP) for r in window)
    assert max(r.prefill_done_s for r in run.requests) - 1.0 < serial_s


def _tiny_trace(path: Path) -> Path:
    rows = [{"timestamp": 250 * k, "input_length": 200 + 37 * (k % 11), "output_length": 2 + (k % 7) * 9}
            for k in range(40)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_the_cli_compares_a_tiny_window_and_writes_json_that_agrees_with_its_table(tmp_path: Path) -> None:
    """As a user runs it: the installed module in a fresh interpreter, status 0, nothing on stderr."""
    out = tmp_path / "c.json"
    result = subprocess.run(
        [sys.executable, "-m", "joulescale.cli", "twin", "compare", "--trace", str(_tiny_trace(tmp_path / "t.jsonl")),
         "--duration", "5", "--gpus", "8", "--prefill-instances", "1", "--no-cache",
         "--policies", "static-max,joulescale,oracle", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(out.read_text(encoding="utf-8"))
    policies = doc["policies"]
    assert list(policies) == ["static-max", "joulescale", "oracle"]
    for name in ("static-max", "joulescale"):
        energy = policies[name]["energy_j"]
        assert energy["total"] == pytest.approx(energy["prefill"] + energy["decode"])
        assert energy["total"] >= policies["oracle"]["energy_j"]["total"]
        assert 0.0 <= policies[name]["slo_attainment"] <= 1.0
        assert policies[name]["requests"] == doc["config"]["requests"] > 0
    saving = doc["joulescale_saving_vs_static_max"]["total"]
    assert saving == pytest.approx(1 - policies["joulescale"]["energy_j"]["total"]
                                   / policies["static-max"]["energy_j"]["total"])
    assert f"joulescale uses {saving * 100:.1f}% less energy than static-max" in result.stdout
    table_row = next(line for line in result.stdout.splitlines() if line.startswith("joulescale "))
    assert f"{policies['joulescale']['energy_j']['total'] / 1e3:.1f}" in table_row.split()
    assert doc["config"]["prefill_instances"] == 1
    assert doc["config"]["decode_instances"] == 1


def test_the_cli_refuses_a_trace_whose_request_does_not_fit_one_instance(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    kv = profile().kv_capacity_tokens
    path.write_text(json.dumps({"timestamp": 0, "input_length": 10, "output_length": 2}) + "\n"
                    + json.dumps({"timestamp": 1000, "input_length": kv + 1, "output_length": 2}) + "\n",
                    encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "joulescale.cli", "twin", "compare", "--trace", str(path),
                             "--gpus", "8", "--no-cache"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"{path}:2: {kv + 1} prompt + 2 output tokens do not fit" in result.stderr


def test_a_trace_of_single_token_answers_has_a_capacity_and_writes_strict_json(tmp_path: Path) -> None:
    """Found by these tests: with no request longer than one token there is no TPOT; its NaN
    percentile failed every capacity probe ("the cluster misses the SLO even at a tiny fraction of
    the trace's rate"), and a NaN figure was written into --json as the bare token NaN, which
    strict JSON parsers refuse. No TPOT to measure now misses nothing, and undefined figures
    are written as null."""
    path = tmp_path / "classify.jsonl"
    path.write_text("".join(json.dumps({"timestamp": 400 * k, "input_length": 150 + 20 * (k % 5),
                                        "output_length": 1}) + "\n" for k in range(30)), encoding="utf-8")
    out = tmp_path / "c.json"
    result = subprocess.run(
        [sys.executable, "-m", "joulescale.cli", "twin", "compare", "--trace", str(path), "--duration", "5",
         "--gpus", "8", "--prefill-instances", "1", "--no-cache", "--policies", "static-max,joulescale,oracle",
         "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in strict JSON")

    doc = json.loads(out.read_text(encoding="utf-8"), parse_constant=refuse)
    entry = doc["policies"]["static-max"]
    assert entry["tpot_ms_at_percentile"] is None
    assert entry["ttft_ms_at_percentile"] > 0
    assert entry["slo_attainment"] == 1.0
    assert doc["config"]["capacity_requests_per_second"] > 0
