"""The core planner behind the loop's seam: settings from the spec, candidates limited to what
each role's Deployment can run, and real decisions (the twin's tables, HiGHS)."""

from __future__ import annotations

import pytest

from joulescale.api import EnergyAwareLLMServiceSpec
from joulescale.profiles import shipped_catalog
from joulescale_operator.planloop.loop import CurrentState, PlanningFailed
from joulescale_operator.planloop.observation import ServiceObservation
from joulescale_operator.planloop.planner import CorePlanner, current_placement, planner_settings

H100 = "NVIDIA-H100-80GB-HBM3"


def spec(max_replicas: int = 4, **energy: object) -> EnergyAwareLLMServiceSpec:
    scaled = {"autoscaling": {"minReplicas": 1, "maxReplicas": max_replicas}, "tensorParallelSize": 1,
              "gpu": {"products": [H100]}}
    return EnergyAwareLLMServiceSpec.model_validate({
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}, "engine": {"image": "vllm/vllm-openai:v0.11.0"},
        "prefill": scaled, "decode": scaled, "slo": {"ttftMs": 600, "tpotMs": 50},
        "energy": {"planner": {"intervalSeconds": 30, "safetyMarginPercent": 20}, **energy},
    })


def window(rate_rps: float, end_s: float) -> ServiceObservation:
    n = rate_rps * 30
    return ServiceObservation(30, end_s, {"prefill": n, "decode": n}, {"prefill": 1, "decode": 1},
                              {"prefill": n * 1000.0}, {"decode": n * 200.0}, None, None, {}, {})


ONE_EACH = CurrentState({"prefill": 1, "decode": 1}, {"prefill": 1, "decode": 1}, None)


@pytest.fixture(scope="module")
def planner(tmp_path_factory: pytest.TempPathFactory) -> CorePlanner:
    return CorePlanner(shipped_catalog(), tmp_path_factory.mktemp("tables"))


def test_settings_come_from_the_spec() -> None:
    settings = planner_settings(spec(max_replicas=5))
    assert settings.gpu_budget == {H100: 10}  # both roles' max replicas x TP1 on one product
    assert (settings.replicas.prefill_min, settings.replicas.decode_max) == (1, 5)
    assert settings.margin == pytest.approx(0.2)
    assert settings.interval_s == 30.0
    assert (settings.slo.ttft_ms, settings.slo.tpot_ms, settings.slo.percentile) == (600, 50, 99)


def test_the_memory_comes_from_the_spec_and_defaults_to_six_intervals() -> None:
    assert planner_settings(spec()).remember_s == 6 * 30.0
    shortened = planner_settings(spec(planner={"intervalSeconds": 30, "memorySeconds": 45}))
    assert (shortened.memory_s, shortened.remember_s) == (45.0, 45.0)
    assert planner_settings(spec(planner={"intervalSeconds": 30, "memorySeconds": 0})).remember_s == 0.0


def test_the_running_placement_uses_the_planned_clock_and_the_roles_candidates(planner: CorePlanner) -> None:
    _, source, _ = planner._planner(("ns", "shape"), spec(clocks={"maxMHz": 1700}))
    candidates = source.candidates()
    assert candidates
    assert all(c.tensor_parallel_size == 1 and c.gpu_product == H100 for c in candidates)
    assert all(c.base_clock_mhz <= 1700 for c in candidates)
    running = current_placement(ONE_EACH, candidates)
    highest = max(c.base_clock_mhz for c in candidates if c.phase == "decode")
    assert [a.candidate.base_clock_mhz for a in running.role("decode")] == [highest]


def test_a_load_surge_scales_up_at_once_and_a_surge_past_the_budget_fails(planner: CorePlanner) -> None:
    key = ("ns", "surge")
    quiet = planner.plan(key, spec(), window(1.0, 1000.0), ONE_EACH, 1000.0)
    assert quiet.replicas == {"prefill": 1, "decode": 1}
    assert quiet.base_clock_mhz["decode"] is not None
    assert quiet.predicted_power_watts
    busy = planner.plan(key, spec(), window(15.0, 1030.0), ONE_EACH, 1030.0)
    assert busy.replicas["prefill"] + busy.replicas["decode"] > 2  # an SLO at risk changes at once
    assert busy.forecast_rps >= 15.0
    with pytest.raises(PlanningFailed, match="infeasible"):
        planner.plan(key, spec(), window(500.0, 1060.0), ONE_EACH, 1060.0)
