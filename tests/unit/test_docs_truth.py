"""The docs describe what exists: what is only planned says so.

Checked against the repository itself, so a doc goes stale in CI, not in a reader's hands:
the README's dependency table against pyproject and the imports of the code, the layout of
docs/architecture.md against the folders, and twin.md against dated history.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("joulescale", "operator", "node_agent")
IMPORT_NAME = {"nvidia-ml-py": "pynvml", "pyyaml": "yaml", "grpcio": "grpc"}
NOT_USED = "not used"


RUNTIME_EXTRAS = ("operator", "agent", "twin", "planning")
"""The extras a component installs; `test` holds the developer's tools, not the product's."""


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"]]
    for extra in RUNTIME_EXTRAS:
        specs += project["optional-dependencies"][extra]
    return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in specs}


def _imported(module: str) -> bool:
    pattern = re.compile(
        rf"^\s*(?:import|from)\s+{module}\b|import_module\(\s*[\"']{module}[\"']|^[A-Z_]+ = [\"']{module}[\"']$",
        re.MULTILINE,
    )
    return any(
        pattern.search(path.read_text(encoding="utf-8"))
        for folder in CODE_DIRS
        for path in (ROOT / folder).rglob("*.py")
    )


def _readme_dependency_rows() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Dependencies and why", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) < 2 or cells[0] in ("dependency", "") or set(cells[0]) <= {"-"}:
            continue
        for name in cells[0].split(","):
            rows[name.strip().lower()] = cells[-1]
    return rows


def test_the_readme_lists_every_declared_dependency_and_says_which_are_not_used_yet() -> None:
    rows = _readme_dependency_rows()
    assert set(rows) == _declared()
    for name, why in rows.items():
        used = _imported(IMPORT_NAME.get(name, name.replace("-", "_")))
        assert (NOT_USED not in why) == used, f"{name}: imported={used}, README says {why!r}"


def _house_entries() -> list[tuple[str, str]]:
    """(path, description) for each folder in the layout block of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## The house", 1)[1].split("```", 2)[1]
    entries, top = [], ""
    for line in block.splitlines():
        match = re.match(r"^( *)\(?([\w./-]+/)\)?\s*(.*)$", line)
        if not match:
            continue
        indent, name, description = match.groups()
        if not indent:
            top = name
            entries.append((name, description))
        elif top:
            entries.append((top + name, description))
    return entries


def test_every_folder_of_the_layout_exists_unless_it_is_marked_planned() -> None:
    entries = _house_entries()
    assert {"joulescale/control/", "operator/joulescale_operator/", "docs/"} <= {path for path, _ in entries}
    missing = [
        path for path, description in entries if "(planned)" not in description and not (ROOT / path).is_dir()
    ]
    assert not missing, f"docs/architecture.md lists folders that do not exist: {missing}"


def test_the_planner_and_the_dashboard_are_marked_planned_where_they_are_described() -> None:
    for page in ("README.md", "docs/architecture.md"):
        text = (ROOT / page).read_text()
        for paragraph in text.split("\n\n"):
            mentions = re.search(r"\b(planner|dashboard)\b", paragraph, re.IGNORECASE)
            marked = re.search(r"planned|(?:once|until) (?:it|the planner) exists", paragraph, re.IGNORECASE)
            if mentions and "```" not in paragraph and not marked:
                raise AssertionError(f"{page}: describes the {mentions.group(1)} as built:\n{paragraph}")


def test_twin_md_keeps_the_facts_without_a_dated_history() -> None:
    text = (ROOT / "docs" / "twin.md").read_text()
    assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", text)
    assert "before then" not in text
