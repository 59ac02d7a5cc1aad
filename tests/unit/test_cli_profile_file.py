"""``joulescale twin compare --profile FILE``: a user's profile file, through the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from joulescale.profiles import load_profile
from tests.unit.hostile_cli import Outcome, assert_refused, run_all


def _document(**changes: object) -> dict[str, object]:
    document = load_profile("h100-sxm-llama-70b-tp4").model_dump(mode="json", exclude_none=True)
    document["name"] = "my-h100-llama-70b-tp4"
    document.update(changes)
    return document


def _write(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _compare(*argv: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "joulescale.cli", "twin", "compare", "--no-cache", *argv],
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def test_a_profile_file_runs_the_twin_with_its_own_physics(tmp_path: Path) -> None:
    path = _write(tmp_path / "mine.yaml", _document())
    out = tmp_path / "c.json"
    result = _compare("--profile", str(path), "--duration", "10", "--prefill-instances", "2",
                      "--policies", "static-max", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text(encoding="utf-8"))["config"]["profile"] == "my-h100-llama-70b-tp4"
    # The file's physics, not the shipped profile of the same GPU/model/TP: a KV cache too small
    # for the trace's requests is refused naming the file's profile.
    small = _write(tmp_path / "small.yml", _document(kv_capacity_tokens=64, kv_capacity_derivation=None))
    refused = _compare("--profile", str(small), "--duration", "10", "--prefill-instances", "2",
                       "--policies", "static-max", timeout_s=30.0)
    assert_refused(refused, "my-h100-llama-70b-tp4: 64 tokens")


def _hostile(tmp_path: Path) -> list[tuple[str, str, str]]:
    """(label, --profile value, what the one error line must name)."""
    cases: list[tuple[str, object, str]] = [
        ("typo", _document(idle_powr_watts=75), "field 'idle_powr_watts'"),
        ("string-number", _document(power_limit_watts="700"), "field 'power_limit_watts'"),
        ("negative", _document(tensor_parallel_size=-4), "field 'tensor_parallel_size'"),
        ("nan", _document(idle_power_watts=float("nan")), "field 'idle_power_watts'"),
        ("nested", {**_document(), "decode": {**_document()["decode"], "power": {"floor_watts": 1}}},  # type: ignore[dict-item]
         "field 'decode.power"),
        ("missing", {k: v for k, v in _document().items() if k != "gpu_product"}, "field 'gpu_product'"),
        ("list", [1, 2, 3], "mapping at the top level"),
    ]
    out: list[tuple[str, str, str]] = []
    for label, document, expected in cases:
        out.append((label, str(_write(tmp_path / f"{label}.yaml", document)), expected))
    raw = {
        "alias-bomb": ('a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n', "aliases are not allowed"),
        "duplicate": ("name: a\nname: b\n", "duplicate key 'name'"),
        "bad-yaml": ("name: [unclosed\n", "not valid YAML"),
        "tabs": ("name:\t\x00x\n", "NUL byte"),
    }
    for label, (text, expected) in raw.items():
        path = tmp_path / f"{label}.yaml"
        path.write_text(text, encoding="utf-8")
        out.append((label, str(path), expected))
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    out.append(("latin1", str(tmp_path / "latin1.yaml"), "not UTF-8"))
    (tmp_path / "huge.yaml").write_bytes(b"#" * (65 * 1024))
    out.append(("huge", str(tmp_path / "huge.yaml"), "byte limit"))
    (tmp_path / "folder.yaml").mkdir()
    out.append(("directory", str(tmp_path / "folder.yaml"), "not a regular file"))
    out.append(("missing-file", str(tmp_path / "absent.yaml"), "cannot read"))
    out.append(("device", os.devnull, "not a regular file"))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.yaml")
        out.append(("fifo", str(tmp_path / "pipe.yaml"), "not a regular file"))
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[str, str, str]], list[Outcome]]:
    cases = _hostile(tmp_path_factory.mktemp("profiles"))
    return cases, run_all([["twin", "compare", "--no-cache", "--profile", value] for _, value, _ in cases])


def test_every_bad_profile_file_is_one_line_naming_the_flag_and_the_problem(
    hostile: tuple[list[tuple[str, str, str]], list[Outcome]],
) -> None:
    cases, outcomes = hostile
    assert len(cases) >= 16
    for (label, value, expected), outcome in zip(cases, outcomes, strict=True):
        try:
            assert_refused(outcome, "argument --profile:", expected)
        except AssertionError as error:
            raise AssertionError(f"{label} ({value}): {error}") from error


def test_the_prefill_profile_flag_takes_a_file_too(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.yaml", _document(gpu_product=7))
    [outcome] = run_all([["twin", "compare", "--no-cache", "--prefill-profile", str(path)]])
    assert_refused(outcome, "argument --prefill-profile:", "field 'gpu_product'")
