"""The shared model base: camelCase on the wire, snake_case in Python, unknown fields refused."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "joulescale.io"
VERSION = "v1alpha1"
KIND = "EnergyAwareLLMService"
PLURAL = "energyawarellmservices"
SINGULAR = "energyawarellmservice"
SHORT_NAME = "eals"
API_VERSION = f"{GROUP}/{VERSION}"


class ApiModel(BaseModel):
    """Base of every spec model: the wire names are camelCase aliases, extra keys are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the apiserver stores it (aliases, no unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(ApiModel):
    """Status is written by several actors (operator, planner); keys we do not know are ignored."""

    model_config = ConfigDict(extra="ignore")


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry; fieldPath makes the apiserver name the field."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: JsonDict) -> ConfigDict:
    """A model config carrying CEL rules, so the CRD enforces cross-field rules server-side."""
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": list(rules)})
