"""docs/dev/EXTENDING.md, "A new policy", done the way the recipe says: a policy class and one
``register`` call. With nothing else edited, the API accepts the name, the CRD lists it, the twin
compares it and the agent builds it; the recipe names at most three hand-edited files."""

from __future__ import annotations

import re
from pathlib import Path

from joulescale.api import crd
from joulescale.api.spec import EnergyAwareLLMServiceSpec
from joulescale.control import ClockDecision, DecisionReason, Observation, PolicyContext, Slo
from joulescale.control.registry import PolicyEntry, registered
from joulescale.twin.compare import compare
from joulescale.twin.report import to_json
from joulescale.twin.settings import CompareSettings
from joulescale_agent.control.corebrain import CoreBrainFactory
from joulescale_agent.control.instance import EngineInstance, InstancePolicy

REPO = Path(__file__).resolve().parents[2]


class HalfwayPolicy:
    """The recipe's example: the middle allowed clock, the top one while requests wait."""

    name = "halfway"

    def __init__(self, context: PolicyContext) -> None:
        allowed = context.allowed_mhz
        self.middle_mhz, self.top_mhz = allowed[len(allowed) // 2], allowed[-1]

    def decide(self, observation: Observation) -> ClockDecision:
        if observation.waiting_requests > 0:
            return ClockDecision(self.top_mhz, DecisionReason.QUEUE_PRESSURE, urgent=True)
        return ClockDecision(self.middle_mhz, DecisionReason.ENERGY_OPTIMAL)


HALFWAY = PolicyEntry("halfway", HalfwayPolicy, "the middle clock, the top one while requests wait")


def _spec(policy: str) -> dict[str, object]:
    gpu = {"products": ["NVIDIA-H100-80GB-HBM3"]}
    return {
        "model": {"name": "meta-llama/Llama-3.1-70B-Instruct"},
        "engine": {"image": "vllm/vllm-openai:v0.11.0"},
        "prefill": {"replicas": 1, "tensorParallelSize": 4, "gpu": gpu},
        "decode": {"replicas": 1, "tensorParallelSize": 4, "gpu": gpu},
        "slo": {"ttftMs": 600, "tpotMs": 100},
        "energy": {"policy": policy},
    }


def test_a_registered_policy_reaches_the_api_the_crd_the_twin_and_the_agent(tmp_path: Path) -> None:
    with registered(HALFWAY):
        spec = EnergyAwareLLMServiceSpec.model_validate(_spec("halfway"))
        assert spec.energy.policy == "halfway"
        enum = crd.openapi_schema()["properties"]["spec"]["properties"]["energy"]["properties"]["policy"]["enum"]
        assert "halfway" in enum
        assert "- halfway" in crd.render_crd_yaml()

        result = compare(CompareSettings(trace="azure-conv", load=0.67, duration_s=30.0, prefill_instances=3,
                                         policies=("static-max", "halfway"), cache_dir=tmp_path))
        ours, top = result.summaries["halfway"], result.summaries["static-max"]
        assert ours.requests == top.requests
        assert ours.total_j < top.total_j, "the middle clock costs less than the top one"
        assert "halfway" in to_json(result)["policies"]  # type: ignore[operator]

        instance = EngineInstance("ns", "pod", "decode", "vllm", "http://engine/metrics", ("GPU-0",))
        policy = InstancePolicy("halfway", Slo(ttft_ms=600, tpot_ms=100), "h100-sxm-llama-70b-tp4",
                                settings=spec.energy.policy_settings(), token_budget=spec.engine.max_batched_tokens)
        brain = CoreBrainFactory().build(instance, policy, (900, 1200, 1500, 1980))
        assert brain is not None
        assert brain.policy.name == "halfway"
    # Outside the block the name is unknown again: the registry alone made it known.
    assert "halfway" not in crd.openapi_schema()["properties"]["spec"]["properties"]["energy"]["properties"][
        "policy"]["enum"]


def test_the_recipe_names_at_most_three_hand_edited_files_that_exist() -> None:
    text = (REPO / "docs" / "dev" / "EXTENDING.md").read_text()
    section = text.split("## A new policy", 1)[1].split("\n## ", 1)[0]
    edited = re.findall(r"^\d+\. \*\*Edit\*\* `([^`]+)`", section, re.MULTILINE)
    created = re.findall(r"^\d+\. \*\*Create\*\* `([^`]+)`", section, re.MULTILINE)
    assert 1 <= len(edited) + len(created) <= 3, (edited, created)
    for path in edited:
        assert (REPO / path).is_file(), path
    assert "register(PolicyEntry(" in section
    assert "make crds" in section
