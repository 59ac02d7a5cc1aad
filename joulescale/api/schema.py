"""Turn pydantic's JSON Schema into a structural OpenAPI v3 schema the apiserver accepts.

pydantic writes JSON Schema 2020-12 ($defs, $ref, anyOf-with-null, const, titles); a CRD
needs every node typed, no references, no titles and no additionalProperties beside
properties. This module rewrites one into the other and keeps what `kubectl explain` shows.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

JsonSchema = dict[str, Any]

_KEPT_KEYS = frozenset(
    {
        "type",
        "description",
        "default",
        "enum",
        "format",
        "pattern",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "required",
        "properties",
        "items",
        "additionalProperties",
        "nullable",
    }
)


class SchemaError(ValueError):
    """The model uses a construct that has no structural equivalent."""


def structural_schema(model: type[BaseModel]) -> JsonSchema:
    """The structural schema of a model, with its $defs inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, JsonSchema] = raw.pop("$defs", {})
    return _convert(raw, definitions)


def _resolve(node: JsonSchema, definitions: dict[str, JsonSchema]) -> JsonSchema:
    """Inline a $ref; keys next to it (description, default) win over the definition's."""
    if "$ref" not in node:
        return node
    name = node["$ref"].rsplit("/", 1)[-1]
    merged = dict(definitions[name])
    merged.update({key: value for key, value in node.items() if key != "$ref"})
    return _resolve(merged, definitions)


def _without_null(node: JsonSchema) -> JsonSchema:
    """`X | None` is optional, not nullable: drop the null branch and the None default."""
    branches = node.get("anyOf")
    if branches is None:
        return node
    kept = [branch for branch in branches if branch.get("type") != "null"]
    if len(kept) != 1:
        raise SchemaError(f"a union of {len(kept)} non-null types has no structural form: {node}")
    merged = {key: value for key, value in node.items() if key != "anyOf"}
    merged.update({key: value for key, value in kept[0].items() if key not in merged or key == "type"})
    if merged.get("default", 0) is None:
        del merged["default"]
    return merged


def _convert(node: JsonSchema, definitions: dict[str, JsonSchema]) -> JsonSchema:
    node = _resolve(_without_null(_resolve(node, definitions)), definitions)
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    if "enum" in node and "type" not in node:
        node = {**node, "type": _enum_type(node["enum"])}
    if any(key.startswith("exclusive") for key in node):
        raise SchemaError("exclusive bounds differ between JSON Schema and OpenAPI v3; use ge/le")
    out: JsonSchema = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key == "properties":
            out[key] = {name: _convert(child, definitions) for name, child in value.items()}
        elif key == "items":
            out[key] = _convert(value, definitions)
        elif key == "additionalProperties":
            if value is False or "properties" in node:
                continue
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out[key] = _convert(value, definitions)
        elif key in _KEPT_KEYS:
            out[key] = value
    if "description" in out:
        out["description"] = _explained(out)
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    elif "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        raise SchemaError(f"an untyped node is not structural: {node}")
    return out


def _enum_type(values: list[Any]) -> str:
    if all(isinstance(value, bool) for value in values):
        return "boolean"
    if all(isinstance(value, int) for value in values):
        return "integer"
    if all(isinstance(value, str) for value in values):
        return "string"
    raise SchemaError(f"an enum of mixed types: {values}")


def _explained(node: JsonSchema) -> str:
    """`kubectl explain` prints descriptions and enums but not defaults or bounds: say them."""
    text = str(node["description"])
    notes = []
    if "minimum" in node and "maximum" in node:
        notes.append(f"Range {node['minimum']}..{node['maximum']}.")
    elif "minimum" in node:
        notes.append(f"At least {node['minimum']}.")
    if "default" in node and not isinstance(node["default"], dict | list):
        default = node["default"]
        notes.append(f"Default {str(default).lower() if isinstance(default, bool) else default}.")
    return " ".join([text, *notes])
