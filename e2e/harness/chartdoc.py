"""The values table of the Helm chart's README, written from values.schema.json and values.yaml.

The schema is the one source of each value's type and description (Helm validates every install
against it); values.yaml gives the defaults. Every value in values.yaml must be in the schema and
every value in the schema must have a default, so the table lists all of them.

    python -m e2e.harness.chartdoc            # rewrite helm/joulescale/README.md's table
    python -m e2e.harness.chartdoc --check    # exit 1 when the README is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "joulescale"
START = "<!-- values:start (written by `make chart-docs` from values.schema.json and values.yaml) -->"
END = "<!-- values:end -->"


class ChartDocError(Exception):
    """values.yaml, values.schema.json and the README do not fit together."""


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    description: str


def _resolve(node: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """The node with its local ``$ref`` folded in (the node's own keys win, as for descriptions)."""
    ref = node.get("$ref")
    if ref is None:
        return dict(node)
    prefix = "#/definitions/"
    if not isinstance(ref, str) or not ref.startswith(prefix):
        raise ChartDocError(f"only local definitions can be referenced, not {ref!r}")
    target = schema.get("definitions", {}).get(ref[len(prefix) :])
    if target is None:
        raise ChartDocError(f"{ref} is not defined")
    merged = _resolve(target, schema)
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def _type(node: Mapping[str, Any]) -> str:
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if not isinstance(kind, str):
        raise ChartDocError(f"no type: {json.dumps(node)[:80]}")
    if kind == "array" and isinstance(node.get("items"), Mapping) and "type" in node["items"]:
        return f"list of {node['items']['type']}"
    return kind


def _walk(node: Mapping[str, Any], value: Any, path: str, schema: Mapping[str, Any]) -> Iterator[Row]:
    # A referenced definition (resources, tolerations) is one value's type: documented whole.
    is_type = "$ref" in node
    node = _resolve(node, schema)
    properties = node.get("properties")
    if not is_type and node.get("type") == "object" and isinstance(properties, Mapping):
        if not isinstance(value, Mapping):
            raise ChartDocError(f"{path or 'the values'}: values.yaml holds {value!r}, the schema an object")
        unknown = sorted(set(value) - set(properties))
        if unknown:
            raise ChartDocError(
                f"{path + '.' if path else ''}{unknown[0]} is in values.yaml but not in values.schema.json"
            )
        for name, child in properties.items():
            key = f"{path}.{name}" if path else name
            if name not in value:
                raise ChartDocError(f"{key} is in values.schema.json but has no default in values.yaml")
            yield from _walk(child, value[name], key, schema)
        return
    description = node.get("description")
    if not description:
        raise ChartDocError(f"{path} has no description in values.schema.json")
    yield Row(path, _type(node), json.dumps(value, separators=(", ", ": ")), " ".join(description.split()))


def rows(schema: Mapping[str, Any], values: Mapping[str, Any]) -> list[Row]:
    """One row per documented value, in the schema's order."""
    return list(_walk(schema, values, "", schema))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(documented: list[Row]) -> str:
    lines = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    lines += [
        f"| `{row.key}` | {_cell(row.type)} | `{_cell(row.default)}` | {_cell(row.description)} |"
        for row in documented
    ]
    return "\n".join(lines)


def with_table(readme: str, new_table: str) -> str:
    """The README with the text between its markers replaced by ``new_table``."""
    head, start, rest = readme.partition(START)
    _old, end, tail = rest.partition(END)
    if not start or not end:
        raise ChartDocError(f"the README lacks the markers {START!r} and {END!r}")
    return f"{head}{START}\n{new_table}\n{END}{tail}"


def render(chart: Path = CHART) -> tuple[str, str]:
    """The README as it is and as it should be."""
    schema = json.loads((chart / "values.schema.json").read_text())
    values = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    current = (chart / "README.md").read_text()
    return current, with_table(current, table(rows(schema, values)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail when the README is stale")
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args(argv)
    try:
        current, wanted = render(args.chart)
    except ChartDocError as error:
        print(f"chartdoc: {error}", file=sys.stderr)
        return 2
    if current == wanted:
        return 0
    readme = args.chart / "README.md"
    if args.check:
        print(f"chartdoc: {readme} is stale: run `make chart-docs`", file=sys.stderr)
        return 1
    readme.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
