"""The shared model base: camelCase on the wire, snake_case in Python, unknown fields refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

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


class AllowlistModel(ApiModel):
    """A model of the core API that is also an allowlist: `REFUSED` names the fields of the core
    object that a tenant may not set, each with the reason.

    Unknown fields would only be pruned by the apiserver (rejected only when the client asks for
    strict field validation); a refused field is declared in the schema instead, so that a CEL rule
    rejects it, for every client, with a message that names it. The same check runs here, so that
    the operator never renders a refused field even from an object stored before the CRD changed.
    """

    REFUSED: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            refused = [refusal_message(key, cls.REFUSED[key]) for key in cls.REFUSED if key in data]
            if refused:
                raise ValueError("; ".join(refused))
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        properties = target.setdefault("properties", {})
        rules = list(target.get("x-kubernetes-validations", []))
        for key, reason in cls.REFUSED.items():
            properties[key] = {**_core_api_schema(key), "description": f"Refused: {reason}."}
            rules.append(cel(f"!has(self.{key})", refusal_message(key, reason), f".{key}"))
        if rules:
            target["x-kubernetes-validations"] = rules
        return schema


_BOOLEANS = frozenset(
    {
        "hostPID", "hostIPC", "hostNetwork", "hostUsers", "shareProcessNamespace", "automountServiceAccountToken",
        "setHostnameAsFQDN", "enableServiceLinks", "stdin", "stdinOnce", "tty",
    }
)  # fmt: skip
_STRINGS = frozenset(
    {
        "serviceAccountName", "serviceAccount", "nodeName", "schedulerName", "runtimeClassName", "preemptionPolicy",
        "restartPolicy", "hostname", "hostnameOverride", "subdomain", "dnsPolicy", "procMount", "mountPropagation",
        "hostIP", "name", "generateName", "namespace", "terminationMessagePath", "terminationMessagePolicy",
    }
)  # fmt: skip
_INTEGERS = frozenset({"priority", "activeDeadlineSeconds", "terminationGracePeriodSeconds", "hostPort"})
_STRING_LISTS = frozenset({"add", "finalizers"})
_OBJECT_LISTS = frozenset(
    {
        "initContainers", "ephemeralContainers", "resourceClaims", "readinessGates", "hostAliases",
        "topologySpreadConstraints", "schedulingGates", "volumeDevices", "ownerReferences", "resizePolicy",
        "restartPolicyRules", "claims",
    }
)  # fmt: skip
_ANY_OBJECT: JsonDict = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _core_api_schema(key: str) -> JsonDict:
    """The type a refused field has in the core API: a CEL rule only sees declared, typed fields,
    and a value of the right type must reach the rule so that its message is the one reported."""
    if key in _BOOLEANS:
        return {"type": "boolean"}
    if key in _STRINGS:
        return {"type": "string"}
    if key in _INTEGERS:
        return {"type": "integer"}
    if key in _STRING_LISTS:
        return {"type": "array", "items": {"type": "string"}}
    if key in _OBJECT_LISTS:
        return {"type": "array", "items": _ANY_OBJECT}
    return _ANY_OBJECT


def refusal_message(key: str, reason: str) -> str:
    return f"{key} is not allowed here: {reason}"
