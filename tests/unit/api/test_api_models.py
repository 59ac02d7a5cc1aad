"""The models reject what the CRD rejects, default what it defaults, and speak camelCase."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from joulescale.api import EnergyAwareLLMService, EnergyAwareLLMServiceSpec, RoleSpec, parse_spec


def minimal_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": {"image": "vllm/vllm-openai:v0.11.0"},
        "prefill": {"replicas": 1, "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}},
        "decode": {"replicas": 2, "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}},
        "slo": {"ttftMs": 600, "tpotMs": 50},
    }
    spec.update(changes)
    return spec


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(minimal_spec())
    assert spec.engine.name == "vllm"
    assert spec.engine.port == 8000
    assert spec.slo.percentile == 99
    assert spec.energy.policy == "joulescale"
    assert spec.energy.planner.interval_seconds == 300
    assert spec.energy.planner.safety_margin_percent == 10
    assert spec.kv_transfer.vllm_connector() == "NixlConnector"
    assert spec.kv_transfer.sglang_backend() == "mooncake"
    assert spec.prefill.tensor_parallel_size == 1
    assert spec.router.enabled is False


def test_wire_names_are_camel_case_with_units() -> None:
    spec = parse_spec(minimal_spec(energy={"clocks": {"minMHz": 900, "maxMHz": 1980}}))
    wire = spec.to_wire()
    assert wire["energy"]["clocks"] == {"minMHz": 900, "maxMHz": 1980}
    assert wire["slo"] == {"ttftMs": 600, "tpotMs": 50, "percentile": 99}
    assert "tensorParallelSize" in wire["prefill"]
    assert parse_spec(wire) == spec


def test_replicas_and_autoscaling_are_mutually_exclusive() -> None:
    both = {"replicas": 1, "autoscaling": {"maxReplicas": 3}, "gpu": {"products": ["A"]}}
    with pytest.raises(pydantic.ValidationError, match="exactly one of replicas"):
        RoleSpec.model_validate(both)
    with pytest.raises(pydantic.ValidationError, match="exactly one of replicas"):
        RoleSpec.model_validate({"gpu": {"products": ["A"]}})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"prefill": {"autoscaling": {"minReplicas": 4, "maxReplicas": 2}, "gpu": {"products": ["A"]}}},
            "minReplicas",
        ),
        ({"energy": {"clocks": {"minMHz": 1500, "maxMHz": 900}}}, "minMHz"),
        ({"kvTransfer": {"backend": "nixl"}}, "kvTransfer.backend is for sglang"),
        ({"slo": {"ttftMs": 600, "tpotMs": 50, "percentile": 42}}, "percentile"),
        ({"model": {"name": "m", "uri": "s3://bucket/m"}}, "uri"),
    ],
)
def test_invalid_specs_are_rejected_naming_the_problem(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        parse_spec(minimal_spec(**changes))


def test_sglang_refuses_a_vllm_connector() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"kvTransfer\.connector is for vllm"):
        parse_spec(
            minimal_spec(
                engine={"name": "sglang", "image": "lmsysorg/sglang"},
                kvTransfer={"connector": "NixlConnector"},
            )
        )


def test_unknown_spec_fields_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="replica"):
        parse_spec(minimal_spec(decode={"replica": 2, "gpu": {"products": ["A"]}}))


def test_status_tolerates_fields_written_by_newer_actors() -> None:
    body = {
        "metadata": {"name": "x"},
        "spec": minimal_spec(),
        "status": {"observedGeneration": 3, "plan": {"decodeReplicas": 4, "futureField": 1}, "someday": {}},
    }
    service = EnergyAwareLLMService.model_validate(body)
    assert service.status is not None
    assert service.status.plan is not None
    assert service.status.plan.decode_replicas == 4


def test_spec_model_is_immutable() -> None:
    spec = EnergyAwareLLMServiceSpec.model_validate(minimal_spec())
    with pytest.raises(pydantic.ValidationError):
        spec.slo.ttft_ms = 1  # type: ignore[misc]
