"""An SLO a trace can meet, or the reason why not: the floor at f_max, the binding prompts, the
remedies, ``auto`` targets, and long prompts (up to 128k tokens) that the engine model holds."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from joulescale.cli import main
from joulescale.control.policy import Slo
from joulescale.engines.model import DecodeModel, EngineRequest
from joulescale.twin import feasibility
from joulescale.twin.capacity import window_requests
from joulescale.twin.compare import NoFeasibleRateError, compare
from joulescale.twin.metrics import meets_slo
from joulescale.twin.report import preamble
from joulescale.twin.settings import CompareSettings
from joulescale.twin.simulator import simulate
from joulescale.twin.synth import LongContextSpec, long_context_trace, to_jsonl
from joulescale.twin.traces import TraceRequest, load_trace

from .helpers import fixed_control, profile, small_cluster

LONG = LongContextSpec(requests=120, rate_per_s=0.5, seed=7)


@pytest.fixture(scope="module")
def long_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.jsonl"
    path.write_text(to_jsonl(long_context_trace(LONG)), encoding="utf-8")
    return path


def test_the_synthetic_trace_is_log_normal_around_8k_capped_at_128k_and_repeats_from_its_seed(long_trace: Path) -> None:
    big = long_context_trace(LongContextSpec(requests=4000, seed=3))
    prompts = sorted(r.prompt_tokens for r in big.requests)
    median = prompts[len(prompts) // 2]
    assert 7000 < median < 9400  # the median of 4000 draws of a log-normal around 8192
    assert prompts[-1] == 131_072
    assert prompts[0] >= 256
    assert long_context_trace(LongContextSpec(requests=4000, seed=3)) == big
    assert long_context_trace(LongContextSpec(requests=4000, seed=4)).digest != big.digest
    read_back = load_trace(str(long_trace))
    assert [(r.prompt_tokens, r.output_tokens) for r in read_back.requests] == \
        [(r.prompt_tokens, r.output_tokens) for r in long_context_trace(LONG).requests]


def test_requests_replayed_alone_have_the_latency_each_has_in_a_cluster_of_its_own() -> None:
    """The floor is each request alone: the same TTFT and TPOT as a run holding only that request."""
    cluster = small_cluster(1, 1)
    slo = Slo(600.0, 100.0, 99)
    requests = [TraceRequest(0.0, 120_000, 40), TraceRequest(0.1, 9_000, 200), TraceRequest(0.2, 500, 1)]
    floor = feasibility.alone(requests, cluster, slo, None)
    top = profile().max_sm_clock_mhz
    for index, request in enumerate(requests):
        solo = simulate([TraceRequest(0.0, request.prompt_tokens, request.output_tokens)], cluster,
                        fixed_control(top, top)).requests[0]
        assert floor.ttft_ms[index] == pytest.approx(solo.ttft_s * 1000.0)
        if request.output_tokens > 1:
            assert floor.tpot_ms[index] == pytest.approx(solo.tpot_s * 1000.0)
        else:
            assert math.isnan(floor.tpot_ms[index])
    assert floor.ttft_ms[0] > floor.ttft_ms[1] > floor.ttft_ms[2]  # longer prompts, longer prefill


def test_the_explanation_names_the_floor_the_binding_prompts_and_measures_each_remedy() -> None:
    trace = long_context_trace(LONG)
    cluster = small_cluster(1, 1)
    slo = Slo(600.0, 100.0, 90)
    requests = list(trace.requests)
    why = feasibility.explain(requests, cluster, slo, None)
    floor = why.floor
    assert floor.ttft_ms_at_percentile > slo.ttft_ms
    binding = why.ttft_binding
    assert binding is not None
    over = [r.prompt_tokens for r, ttft in zip(requests, floor.ttft_ms, strict=True) if ttft > slo.ttft_ms]
    assert binding.requests == len(over)
    assert binding.share == pytest.approx(len(over) / len(requests))
    assert binding.shortest_prompt_tokens == min(over)
    assert binding.longest_prompt_tokens == max(over)
    under = [r.prompt_tokens for r, ttft in zip(requests, floor.ttft_ms, strict=True) if ttft <= slo.ttft_ms]
    assert max(under) < binding.shortest_prompt_tokens  # alone, TTFT grows with the prompt: the long ones bind
    names = [r.name for r in why.remedies]
    assert names[0] == "a TP8 prefill profile"
    assert "h100-sxm-llama-70b-tp8" in why.remedies[0].how
    assert why.remedies[0].ttft_ms_at_percentile is not None
    assert why.remedies[0].ttft_ms_at_percentile < floor.ttft_ms_at_percentile  # TP8 prefills faster
    assert any(n.startswith("another token budget") for n in names)
    more = next(r for r in why.remedies if r.name == "more GPUs")
    assert more.helps is False  # the floor misses: capacity cannot fix latency per request
    aggregated = next(r for r in why.remedies if "--topology aggregated" in r.how)
    alone_aggregated = feasibility.alone(requests, feasibility.to_aggregated(cluster), slo, None)
    assert aggregated.ttft_ms_at_percentile == alone_aggregated.ttft_ms_at_percentile  # measured, not only named
    assert aggregated.helps == (alone_aggregated.ttft_ms_at_percentile <= slo.ttft_ms)
    text = why.text()
    assert f"P90 TTFT {floor.ttft_ms_at_percentile:.0f} ms" in text
    assert f"prompts of {binding.shortest_prompt_tokens}-{binding.longest_prompt_tokens} tokens" in text
    assert f"--slo-ttft-ms auto ({feasibility.auto_ms(floor.ttft_ms_at_percentile):.0f} ms)" in text
    document = json.loads(json.dumps(why.to_json()))
    assert document["ttft_binding"]["requests"] == binding.requests
    assert document["auto_slo"]["ttft_ms"] == math.ceil(floor.ttft_ms_at_percentile * 1.2)


def test_the_default_slo_on_a_long_context_trace_prints_the_explanation_not_a_dead_end(long_trace: Path,
                                                                                          tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    status = main(["twin", "compare", "--trace", str(long_trace), "--duration", "5", "--gpus", "8",
                   "--policies", "static-max", "--no-cache", "--json", str(tmp_path / "why.json")], out, err)
    text = out.getvalue()
    assert status == 1, err.getvalue()
    assert text.startswith("No rate meets the SLO (P99 TTFT 600 ms / TPOT 100 ms) on this trace.")
    assert "Binding (TTFT):" in text
    assert "What would help:" in text
    assert "--prefill-profile h100-sxm-llama-70b-tp8" in text
    assert "--rate native" in text
    assert err.getvalue() == ""  # not a terminal: no progress bar
    document = json.loads((tmp_path / "why.json").read_text(encoding="utf-8"))
    floor_ms = document["feasibility"]["ttft_ms_at_percentile_alone_at_fmax"]
    assert floor_ms > 600.0
    assert f"--slo-ttft-ms auto ({math.ceil(floor_ms * 1.2)} ms)" in text


def test_auto_picks_the_tightest_ttft_with_20_percent_headroom_and_a_tighter_one_has_no_rate(long_trace: Path) -> None:
    settings = CompareSettings(trace=str(long_trace), duration_s=40.0, gpus=8, slo=Slo(600.0, 100.0, 90),
                               auto_ttft=True, policies=("static-max",))
    result = compare(settings)
    window = list(load_trace(str(long_trace)).requests[:window_requests(90)])  # the capacity window, from 0 s
    floor = feasibility.alone(window, result.cluster, Slo(600.0, 100.0, 90), None)
    assert result.settings.slo.ttft_ms == math.ceil(floor.ttft_ms_at_percentile * 1.2)
    assert result.settings.slo.tpot_ms == 100.0  # only the target asked for auto
    assert result.auto_slo_from is not None
    assert "alone" in result.auto_slo_from
    assert result.capacity is not None
    assert result.capacity.requests_per_second > 0
    assert result.feasibility is None
    assert f"TTFT {result.settings.slo.ttft_ms:.0f} ms / TPOT 100 ms (auto: 20 % over" in preamble(result)
    below_floor = Slo(floor.ttft_ms_at_percentile * 0.95, 100.0, 90)
    with pytest.raises(NoFeasibleRateError):
        compare(CompareSettings(trace=str(long_trace), duration_s=40.0, gpus=8, slo=below_floor,
                                policies=("static-max",)))


def test_auto_with_a_given_rate_measures_static_max_at_that_rate(long_trace: Path) -> None:
    settings = CompareSettings(trace=str(long_trace), duration_s=30.0, gpus=8, slo=Slo(600.0, 100.0, 90),
                               auto_ttft=True, auto_tpot=True, rate="native", policies=("static-max",))
    result = compare(settings)
    assert result.rate_scale == 1.0
    static = result.summaries["static-max"]  # the very window the targets were measured on
    assert result.settings.slo.ttft_ms == math.ceil(static.ttft_ms_at_percentile * 1.2)
    assert result.settings.slo.tpot_ms == math.ceil(static.tpot_ms_at_percentile * 1.2)
    assert meets_slo(static, result.settings.slo)


def test_a_given_rate_replays_even_when_no_rate_meets_the_slo_and_says_why(long_trace: Path) -> None:
    settings = CompareSettings(trace=str(long_trace), duration_s=20.0, gpus=8, slo=Slo(600.0, 100.0, 90),
                               rate="native", policies=("static-max", "joulescale"))
    result = compare(settings)
    assert result.capacity is None
    assert result.feasibility is not None
    assert set(result.summaries) == {"static-max", "joulescale"}
    assert all(r.finish_s >= 0 for r in result.runs["static-max"].requests)  # 128k prompts included
    with pytest.raises(NoFeasibleRateError) as refused:
        compare(CompareSettings(trace=str(long_trace), duration_s=20.0, gpus=8, slo=Slo(600.0, 100.0, 90),
                                policies=("static-max",)))
    assert refused.value.feasibility.floor.ttft_ms_at_percentile == result.feasibility.floor.ttft_ms_at_percentile


def test_a_128k_prompt_is_served_next_to_short_ones_and_decode_admits_it_when_room_frees() -> None:
    """A 128k prompt fits a decode instance's KV cache (456 505 tokens) but not beside a full batch:
    it waits at the head of the queue until requests finish, then runs, without preemption."""
    prof = profile()
    model: DecodeModel[EngineRequest] = DecodeModel(prof, prof.kv_capacity_tokens, 512, 0.01)
    for i in range(3):
        model.enqueue(EngineRequest(i, 0.0, 120_000, 20 + i), 0.0)
    model.enqueue(EngineRequest(9, 0.0, 131_072, 10), 0.0)
    assert model.start_step(0.0)
    assert len(model.running) == 3
    assert len(model.waiting) == 1
    now, finished = 0.0, []
    while model.start_step(now):
        now += model.step_latency_s(prof.max_sm_clock_mhz)
        finished += [r.request_id for r in model.finish_step(now, 0.01)]
    assert sorted(finished) == [0, 1, 2, 9]
    assert finished[-1] == 9
    requests = [TraceRequest(0.0, 131_072, 64)] + [TraceRequest(0.05 * i, 2_000, 64) for i in range(1, 40)]
    run = simulate(requests, small_cluster(1, 1), fixed_control(prof.max_sm_clock_mhz, prof.max_sm_clock_mhz))
    assert all(r.finish_s >= 0 for r in run.requests)
    assert sum(d.recorder.preemptions for d in run.decode) == 0
    solo = feasibility.alone([requests[0]], small_cluster(1, 1), Slo(600.0, 100.0, 99), None)
    assert run.requests[0].ttft_s * 1000.0 == pytest.approx(solo.ttft_ms[0])  # it arrived first: nothing ahead


def test_twin_synth_writes_the_trace_of_its_seed_that_compare_reads(tmp_path: Path) -> None:
    out = io.StringIO()
    path = tmp_path / "synth.jsonl"
    assert main(["twin", "synth", "-o", str(path), "--requests", "300", "--rate", "2", "--seed", "5"], out) == 0
    expected = long_context_trace(LongContextSpec(requests=300, rate_per_s=2.0, seed=5))
    read = load_trace(str(path))
    assert [(r.prompt_tokens, r.output_tokens) for r in read.requests] == \
        [(r.prompt_tokens, r.output_tokens) for r in expected.requests]
    assert read.requests[-1].arrival_s == pytest.approx(expected.requests[-1].arrival_s, abs=1e-3)
    assert f"{path}: 300 requests" in out.getvalue()


def test_an_aggregated_cluster_is_explained_with_its_own_remedies() -> None:
    trace = long_context_trace(LONG)
    cluster = feasibility.to_aggregated(small_cluster(1, 1))
    assert cluster.topology == "aggregated"
    assert cluster.aggregated_instances == small_cluster(1, 1).gpus // cluster.profile.tensor_parallel_size
    why = feasibility.explain(list(trace.requests), cluster, Slo(600.0, 100.0, 90), None)
    names = [r.name for r in why.remedies]
    assert not any("prefill profile" in n for n in names)  # an aggregated instance has none of its own
    budget = next(r for r in why.remedies if r.name.startswith("another token budget"))
    assert int(budget.name.split(": ")[1].split(" ")[0]) >= cluster.decode_max_running
    assert any("--topology disaggregated" in r.how for r in why.remedies)


def test_auto_and_a_given_rate_run_on_the_aggregated_topology(long_trace: Path) -> None:
    settings = CompareSettings(trace=str(long_trace), duration_s=30.0, gpus=8, slo=Slo(600.0, 100.0, 90),
                               auto_ttft=True, auto_tpot=True, rate="native", topology="aggregated",
                               policies=("static-max",))
    result = compare(settings)
    assert result.cluster.topology == "aggregated"
    assert result.rate_scale == 1.0
    static = result.summaries["static-max"]
    assert result.settings.slo.ttft_ms == math.ceil(static.ttft_ms_at_percentile * 1.2)
    assert meets_slo(static, result.settings.slo)


def test_both_topologies_refuse_an_auto_slo_and_replay_a_given_rate(long_trace: Path, tmp_path: Path) -> None:
    from joulescale.twin.limits import SettingError
    from joulescale.twin.topology import compare_topologies

    with pytest.raises(SettingError, match="auto SLO"):
        CompareSettings(topology="both", auto_ttft=True)
    out, err = io.StringIO(), io.StringIO()
    assert main(["twin", "compare", "--topology", "both", "--slo-tpot-ms", "auto"], out, err) == 2
    assert "argument --topology" in err.getvalue()
    result = compare_topologies(CompareSettings(trace=str(long_trace), duration_s=20.0, gpus=8, topology="both",
                                                slo=Slo(600.0, 100.0, 90), rate="native",
                                                policies=("static-max",), cache_dir=tmp_path))
    assert result.rate_scale == 1.0
    assert {c.rate_scale for c in result.comparisons.values()} == {1.0}
    assert all(c.feasibility is not None for c in result.comparisons.values() if c.capacity is None)
