"""The CRD is generated from the models, structural, and committed fresh under crds/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from joulescale.api import crd
from joulescale.api.schema import SchemaError, structural_schema
from joulescale.control.registry import policy_names

REPO = Path(__file__).resolve().parents[3]


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, child in node.get("properties", {}).items():
            found += walk(child, f"{path}.{key}")
        if "items" in node:
            found += walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_committed_crds_are_fresh() -> None:
    assert crd.stale_files(REPO / "crds") == [], "crds/ is stale: run `make crds`"


def test_check_mode_fails_on_a_stale_directory_and_passes_once_written(tmp_path: Path) -> None:
    assert crd.main(["--check", str(tmp_path)]) == 1
    assert crd.main([str(tmp_path)]) == 0
    assert crd.main(["--check", str(tmp_path)]) == 0
    (tmp_path / crd.CRD_FILE_NAME).write_text("edited by hand\n")
    assert crd.main(["--check", str(tmp_path)]) == 1


def test_schema_is_structural() -> None:
    schema = crd.openapi_schema()
    for path, node in walk(schema):
        assert not {"$ref", "anyOf", "title"} & set(node), path
        untyped_allowed = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node or untyped_allowed, path
        assert not ("properties" in node and "additionalProperties" in node), path


def test_schema_carries_defaults_enums_bounds_and_descriptions() -> None:
    spec = crd.openapi_schema()["properties"]["spec"]
    energy = spec["properties"]["energy"]
    assert energy["default"] == {}
    assert energy["properties"]["policy"]["enum"] == [*policy_names(), "off"]
    assert energy["properties"]["policy"]["default"] == "joulescale"
    percentile = spec["properties"]["slo"]["properties"]["percentile"]
    assert percentile == {**percentile, "type": "integer", "enum": [50, 90, 95, 99], "default": 99}
    tp = spec["properties"]["prefill"]["properties"]["tensorParallelSize"]
    assert (tp["minimum"], tp["maximum"]) == (1, 64)
    undocumented = [
        path
        for path, node in walk(spec)
        if "[" not in path and "{" not in path and not node.get("description")
    ]
    assert undocumented == []


def test_cross_field_rules_are_cel_validations_naming_their_field() -> None:
    spec = crd.openapi_schema()["properties"]["spec"]
    rules = {
        path: [r.get("fieldPath") for r in node["x-kubernetes-validations"]]
        for path, node in walk(spec)
        if "x-kubernetes-validations" in node
    }
    assert rules[".prefill"] == [".replicas"]
    assert rules[".decode.autoscaling"] == [".minReplicas"]
    assert rules[".energy.clocks"] == [".minMHz"]
    assert rules[""] == [".kvTransfer.backend", ".kvTransfer.connector"]
    assert ".router" not in rules  # the operator picks a router image per engine when none is given


def test_crd_has_status_subresource_printer_columns_and_short_name() -> None:
    manifest = yaml.safe_load(crd.render_crd_yaml())
    version = manifest["spec"]["versions"][0]
    assert manifest["metadata"]["name"] == "energyawarellmservices.joulescale.io"
    assert manifest["spec"]["names"]["shortNames"] == ["eals"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns == [
        "Ready", "Reason", "Prefill", "Decode", "Planned", "J/token", "SLO%", "Policy", "Endpoint", "Model", "Age"
    ]
    by_name = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert by_name["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert by_name["Endpoint"]["jsonPath"] == ".status.endpoint"
    assert by_name["J/token"]["jsonPath"] == ".status.energy.joulesPerOutputToken"
    energy = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["energy"]["properties"]
    assert {"joulesPerOutputToken", "sloAttainmentPercent", "estimatedSavingPercent", "prefill", "decode"} <= set(energy)
    assert "endpoint" in version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]


def test_exclusive_bounds_are_refused_because_openapi_v3_spells_them_differently() -> None:
    class Bad(BaseModel):
        share: int = Field(gt=0)

    with pytest.raises(SchemaError, match="exclusive"):
        structural_schema(Bad)


def test_unions_of_two_types_are_refused() -> None:
    class Bad(BaseModel):
        either: int | list[int]

    with pytest.raises(SchemaError, match="union"):
        structural_schema(Bad)
