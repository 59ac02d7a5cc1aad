"""docs/dev/EXTENDING.md's recipes, followed to the letter.

The test reads the page, writes the files it shows, runs the commands it shows (as a reader would
type them, in a fresh folder) and compares their output with the page's. A recipe that drifts from
the code fails here, not in a newcomer's hands.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from joulescale.profiles import (
    catalog_from_dir,
    derived_kv_capacity_tokens,
    load_profile_file,
    shipped_catalog,
)

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "dev" / "EXTENDING.md"
BIN = Path(sys.executable).parent


def section(title: str) -> str:
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match is not None, f"EXTENDING.md has no section {title!r}"
    return match.group(1)


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """Each ``$ command`` of the console blocks with the output lines shown under it."""
    steps: list[tuple[str, list[str]]] = []
    for block in fenced(text, "console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
    return steps


def run_as_typed(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command as a reader types it, with this interpreter's ``python`` and ``joulescale``."""
    argv = shlex.split(command)
    if argv[0] == "python":
        argv[0] = sys.executable
    elif argv[0] == "joulescale":
        argv[0] = str(BIN / "joulescale")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def saved_as(text: str) -> str:
    match = re.search(r"Saved as `([^`]+)`:", text)
    assert match is not None, "the recipe names the file it writes"
    return match.group(1)


@pytest.fixture(scope="module")
def gpu_profile_recipe(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[tuple[str, list[str]]]]:
    text = section("A GPU profile")
    (profile_text,) = fenced(text, "yaml")
    folder = tmp_path_factory.mktemp("reader")
    path = folder / saved_as(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile_text, encoding="utf-8")
    return text, path, console_steps(text)


def test_the_profile_of_the_recipe_loads_strictly_and_is_new(
    gpu_profile_recipe: tuple[str, Path, list[tuple[str, list[str]]]],
) -> None:
    _, path, _ = gpu_profile_recipe
    profile = load_profile_file(path)
    assert profile.name == path.stem
    assert profile.name not in shipped_catalog().names()
    assert derived_kv_capacity_tokens(profile) == profile.kv_capacity_tokens
    catalog, problems = catalog_from_dir(path.parent)
    assert problems == []
    assert catalog.match(profile.gpu_product, profile.model, profile.tensor_parallel_size) == profile
    assert shipped_catalog().match(profile.gpu_product, profile.model, profile.tensor_parallel_size) is None


def test_the_recipe_shows_the_loader_the_catalog_and_the_twin(
    gpu_profile_recipe: tuple[str, Path, list[tuple[str, list[str]]]],
) -> None:
    _, path, steps = gpu_profile_recipe
    commands = [command for command, _ in steps]
    assert any("load_profile_file" in c for c in commands)
    assert any("catalog_from_dir" in c and ".match(" in c for c in commands)
    assert any(c.startswith("joulescale twin compare") and f"--profile {path.parent.name}/{path.name}" in c
               for c in commands)


def test_every_command_of_the_recipe_runs_and_prints_what_the_page_shows(
    gpu_profile_recipe: tuple[str, Path, list[tuple[str, list[str]]]],
) -> None:
    text, path, steps = gpu_profile_recipe
    reader = path.parent.parent
    printed: dict[str, str] = {}
    for command, shown in steps:
        done = run_as_typed(command, reader)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
        printed[command] = done.stdout
        if shown:
            assert done.stdout.splitlines() == shown, command
    # The twin's run: the page quotes the cluster line, and the JSON holds both policies' energy.
    quoted = re.search(r"It prints the cluster \(`([^`]+)`\)", " ".join(text.split()))
    assert quoted is not None
    twin = next(command for command in printed if command.startswith("joulescale twin compare"))
    assert quoted.group(1) in printed[twin]
    report = json.loads((reader / "compare.json").read_text())
    assert report["config"]["profile"] == load_profile_file(path).name
    assert report["config"]["tensor_parallel_size"] == {"prefill": 2, "decode": 2}
    assert set(report["policies"]) == {"static-max", "joulescale"}
    for summary in report["policies"].values():
        assert summary["energy_j"]["total"] > 0
        assert summary["requests"] > 0
