"""What the schema lets through but cannot be served is caught before any child is touched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.validation import InvalidSpec, validated_spec


def identity(name: str = "llama") -> ServiceIdentity:
    return ServiceIdentity(namespace="ns", name=name, uid="u", generation=1)


def test_a_valid_spec_passes(body_factory: Callable[..., Any]) -> None:
    spec = validated_spec(identity(), body_factory()["spec"])
    assert spec.decode.replicas == 2


@pytest.mark.parametrize(
    "args",
    [["--tensor-parallel-size", "8"], ["--port=9000"], ["--kv-transfer-config", "{}"]],
)
def test_engine_args_may_not_repeat_flags_the_operator_owns(
    body_factory: Callable[..., Any], args: list[str]
) -> None:
    body = body_factory(engine={"image": "vllm/vllm-openai", "args": args})
    with pytest.raises(InvalidSpec, match=r"spec\.engine\.args: --"):
        validated_spec(identity(), body["spec"])


def test_sglang_managed_flags_are_checked_with_sglang_names(body_factory: Callable[..., Any]) -> None:
    body = body_factory(engine={"name": "sglang", "image": "lmsysorg/sglang", "args": ["--tp", "2"]})
    with pytest.raises(InvalidSpec, match="--tp"):
        validated_spec(identity(), body["spec"])


@pytest.mark.parametrize("name", ["x" * 56, "9lives", "has.dot"])
def test_names_that_cannot_name_child_services_are_invalid(
    body_factory: Callable[..., Any], name: str
) -> None:
    with pytest.raises(InvalidSpec, match=r"metadata\.name"):
        validated_spec(identity(name), body_factory()["spec"])


def test_an_override_may_not_drop_the_selector_labels(body_factory: Callable[..., Any]) -> None:
    body = body_factory()
    body["spec"]["prefill"]["podTemplate"] = {"metadata": {"labels": {"joulescale.io/role": "other"}}}
    with pytest.raises(InvalidSpec, match=r"spec\.prefill\.podTemplate\.metadata\.labels"):
        validated_spec(identity(), body["spec"])


def test_schema_violations_are_reported_with_their_path(body_factory: Callable[..., Any]) -> None:
    body = body_factory()
    body["spec"]["decode"]["tensorParallelSize"] = 0
    with pytest.raises(InvalidSpec, match=r"spec\.decode\.tensorParallelSize"):
        validated_spec(identity(), body["spec"])
