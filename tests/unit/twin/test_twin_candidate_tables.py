"""The planner's candidate tables, computed by one-instance probes through the engine model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from joulescale.control.policy import Slo
from joulescale.planning.candidates import enumerate_candidates
from joulescale.planning.forecast import LengthMix
from joulescale.profiles.catalog import shipped_catalog
from joulescale.twin.candidate_tables import TwinCandidateSource
from joulescale.twin.instance_probe import probe
from joulescale.twin.kv_transfer import kv_medium

MODEL = "meta-llama/Llama-3.3-70B-Instruct"
SLO = Slo(ttft_ms=600.0, tpot_ms=100.0)
MIX = LengthMix.of([300, 700, 1100, 1500, 2500] * 20, [60, 150, 250, 400] * 25)


def test_llama_70b_on_h100_has_tp2_tp4_and_tp8_candidates_for_both_phases() -> None:
    catalog = shipped_catalog()
    candidates = enumerate_candidates((catalog.get(n) for n in catalog.names()), MODEL,
                                      products=["NVIDIA-H100-80GB-HBM3"])
    for phase in ("prefill", "decode"):
        assert {c.tensor_parallel_size for c in candidates if c.phase == phase} == {2, 4, 8}
    assert len({c.base_clock_mhz for c in candidates}) == 4


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int, int], float]:
    catalog = shipped_catalog()
    profiles = [catalog.get(f"h100-sxm-llama-70b-tp{tp}") for tp in (4, 8)]
    source = TwinCandidateSource(profiles, MODEL, tmp_path_factory.mktemp("tables"), levels=2)
    return {(t.candidate.phase, t.candidate.tensor_parallel_size, t.candidate.base_clock_mhz): t.capacity_rps
            for t in source.tables(MIX, SLO)}


def test_capacity_grows_with_the_clock_and_with_tp(tables: dict[tuple[str, int, int], float]) -> None:
    clocks = sorted({clock for _, _, clock in tables})
    for phase in ("prefill", "decode"):
        for tp in (4, 8):
            assert 0 < tables[(phase, tp, clocks[0])] < tables[(phase, tp, clocks[-1])]
        assert tables[(phase, 4, clocks[-1])] < tables[(phase, 8, clocks[-1])]


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_one_instance_meets_the_slo_at_half_its_capacity_and_misses_at_twice(
        phase: str, tables: dict[tuple[str, int, int], float]) -> None:
    profile = shipped_catalog().get("h100-sxm-llama-70b-tp4")
    capacity = tables[(phase, 4, profile.max_sm_clock_mhz)]
    medium = kv_medium("infiniband")
    lifetime_s = MIX.mean_output_tokens * 0.1 if phase == "decode" else 0.6
    for scale, meets in ((0.5, True), (2.0, False)):
        rate = scale * capacity
        count = max(600, round(rate * 4 * lifetime_s))
        assert probe(phase, profile, profile.max_sm_clock_mhz, MIX, SLO, rate, count, medium, seed=7).met_slo == meets  # type: ignore[arg-type]


def test_a_corrupt_cache_entry_is_recomputed(tmp_path: Path) -> None:
    profile = shipped_catalog().get("h100-sxm-llama-70b-tp8")
    source = TwinCandidateSource([profile], MODEL, tmp_path, levels=1)
    first = source.tables(MIX, SLO)
    path = tmp_path / "candidate_tables.json"
    data = json.loads(path.read_text())
    for entry in data.values():
        entry["capacity_rps"] = "NaN?"
    path.write_text(json.dumps(data))
    again = TwinCandidateSource([profile], MODEL, tmp_path, levels=1)
    assert again.tables(MIX, SLO) == first
    assert again.computed == len(first)


def test_an_instance_whose_kv_cache_cannot_hold_the_longest_prompt_has_no_capacity(tmp_path: Path) -> None:
    profile = shipped_catalog().get("h100-sxm-llama-70b-tp2")  # 12,939 tokens of KV cache
    short = LengthMix.of([500, 1000, 4000] * 40, [100, 200] * 60)
    long = LengthMix.of([500, 1000, 4000] * 40 + [14_050], [100, 200] * 60 + [50])
    source = TwinCandidateSource([profile], MODEL, tmp_path, levels=1)
    assert all(t.capacity_rps > 0 for t in source.tables(short, SLO) if t.candidate.phase == "prefill")
    assert all(t.capacity_rps == 0 for t in source.tables(long, SLO))
