"""The one matching rule (exact GPU product, model and TP size) and user profile directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from joulescale.profiles import (
    ProfileError,
    catalog_from_dir,
    load_profile,
    load_profile_dir,
    parse_profile,
    shipped_catalog,
)
from joulescale.profiles.catalog import MAX_DIR_PROFILES, with_user_profiles

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
H200 = "NVIDIA-H200"
LLAMA_70B = "meta-llama/Llama-3.3-70B-Instruct"
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"


def _user(name: str, base: str = "h100-sxm-llama-70b-tp4", **changes: object) -> dict[str, object]:
    document = load_profile(base).model_dump(mode="json", exclude_none=True)
    document.update(name=name, **changes)
    return document


def _write(folder: Path, file: str, document: object) -> None:
    (folder / file).write_text(yaml.safe_dump(document), encoding="utf-8")


@pytest.mark.parametrize(("product", "model", "tp", "expected"), [
    (H100, LLAMA_70B, 4, "h100-sxm-llama-70b-tp4"),
    (H100, LLAMA_70B, 8, "h100-sxm-llama-70b-tp8"),
    (A100, LLAMA_8B, 1, "a100-sxm4-80gb-llama-8b-tp1"),
    (H100, LLAMA_70B, 2, "h100-sxm-llama-70b-tp2"),
    (H200, LLAMA_70B, 2, "h200-sxm-llama-70b-tp2"),
    (H200, LLAMA_70B, 4, "h200-sxm-llama-70b-tp4"),
    (H200, LLAMA_8B, 1, "h200-sxm-llama-8b-tp1"),
    # Never another model's physics on the same GPU and TP size (main picked the 70B for these):
    (H100, "Qwen/Qwen2.5-32B-Instruct", 4, None),
    (H100, "Qwen/Qwen2.5-32B-Instruct", 1, None),
    # ...nor the same model at another TP size, another GPU, or a near-miss of the name:
    (H100, LLAMA_70B, 3, None),
    (H200, LLAMA_70B, 8, None),
    (A100, LLAMA_70B, 4, None),
    (H100, LLAMA_70B.lower(), 4, None),
    (H100, LLAMA_70B + " ", 4, None),
    ("", LLAMA_70B, 4, None),
    ("NVIDIA-H100-80GB-HBM3-MIG-1g.10gb", LLAMA_70B, 4, None),
])
def test_only_an_exact_gpu_model_and_tp_match_counts(product: str, model: str, tp: int, expected: str | None) -> None:
    found = shipped_catalog().match(product, model, tp)
    assert (found.name if found is not None else None) == expected


def test_the_agent_chooser_uses_the_same_rule() -> None:
    from joulescale_agent.discovery.profiles import profile_chooser

    choose = profile_chooser(H100)
    assert choose("Qwen/Qwen2.5-32B-Instruct", 4) is None  # main chose the Llama 70B TP4 profile
    assert choose(LLAMA_8B, 4) is None
    assert choose(LLAMA_70B, 3) is None
    assert choose(LLAMA_70B, 4) == "h100-sxm-llama-70b-tp4"


def test_a_user_profile_adds_a_model_and_replaces_a_shipped_one(tmp_path: Path) -> None:
    _write(tmp_path, "qwen.yaml", _user("h100-qwen-32b-tp2", model="Qwen/Qwen2.5-32B-Instruct", tensor_parallel_size=2))
    _write(tmp_path, "measured.yaml", _user("measured-70b-tp4", idle_power_watts=61))
    catalog, problems = catalog_from_dir(tmp_path)
    assert problems == []
    qwen = catalog.match(H100, "Qwen/Qwen2.5-32B-Instruct", 2)
    assert qwen is not None
    assert qwen.name == "h100-qwen-32b-tp2"
    measured = catalog.match(H100, LLAMA_70B, 4)
    assert measured is not None
    assert measured.idle_power_watts == 61
    assert catalog.get("h100-sxm-llama-70b-tp8").name == "h100-sxm-llama-70b-tp8"
    with pytest.raises(ProfileError, match="unknown profile"):
        catalog.get("nosuch")


def test_a_user_profile_of_a_shipped_name_replaces_it_by_name() -> None:
    mine = parse_profile(yaml.safe_dump(_user("h100-sxm-llama-8b-tp1", base="h100-sxm-llama-8b-tp1", idle_power_watts=60)))
    catalog = with_user_profiles([mine])
    assert catalog.get("h100-sxm-llama-8b-tp1").idle_power_watts == 60
    assert catalog.names().count("h100-sxm-llama-8b-tp1") == 1


def test_hostile_files_are_skipped_one_line_each_and_good_ones_load(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    _write(tmp_path, "outside.yaml", _user("outside"))
    folder = tmp_path / "profiles"
    folder.mkdir()
    _write(folder, "a-good.yaml", _user("good"))
    expected_skips = {
        "typo.yaml": "field 'idle_powr_watts'",
        "wrong-type.yaml": "field 'tensor_parallel_size'",
        "dup-name.yaml": "duplicates",
        "dup-key.yml": "duplicates",
        "bomb.yaml": "aliases are not allowed",
        "huge.yaml": "byte limit",
        "binary.yaml": "NUL byte",
        "latin1.yaml": "not UTF-8",
        "top-list.yaml": "mapping at the top level",
        "escape.yaml": "links outside",
        "dangling.yaml": "cannot read",
        "loop.yaml": "cannot read",
        "device.yaml": "links outside",
        "pipe.yaml": "not a regular file",
        "dir.yaml": "not a regular file",
        "new\nline.yaml": "control characters",
    }
    _write(folder, "typo.yaml", {**_user("t"), "idle_powr_watts": 3})
    _write(folder, "wrong-type.yaml", _user("w", tensor_parallel_size="4"))
    _write(folder, "dup-name.yaml", _user("good", tensor_parallel_size=2))
    _write(folder, "dup-key.yml", _user("other-name"))  # same GPU, model and TP as a-good.yaml
    (folder / "bomb.yaml").write_text('a: &a ["x","x"]\nb: [*a,*a]\n', encoding="utf-8")
    (folder / "huge.yaml").write_bytes(b"#" * (64 * 1024 + 1))
    (folder / "binary.yaml").write_bytes(b"name: \x00\x01")
    (folder / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    (folder / "top-list.yaml").write_text("- 1\n", encoding="utf-8")
    (folder / "escape.yaml").symlink_to(outside)
    (folder / "dangling.yaml").symlink_to(folder / "absent")
    (folder / "loop.yaml").symlink_to(folder / "loop.yaml")
    (folder / "device.yaml").symlink_to(os.devnull)
    os.mkfifo(folder / "pipe.yaml")
    (folder / "dir.yaml").mkdir()
    _write(folder, "new\nline.yaml", _user("nl", tensor_parallel_size=3))
    (folder / "README.md").write_text("ignored", encoding="utf-8")
    (folder / ".hidden.yaml").write_text("ignored: [", encoding="utf-8")
    profiles, problems = load_profile_dir(folder)
    assert [p.name for p in profiles] == ["good"]
    assert len(problems) == len(expected_skips), problems
    for file, why in expected_skips.items():
        [line] = [p for p in problems if repr(file)[1:-1] in p or file in p]
        assert why in line, (file, line)
        assert "\n" not in line


def test_a_mounted_configmap_layout_loads(tmp_path: Path) -> None:
    """The kubelet mounts a ConfigMap as links into a hidden, timestamped directory."""
    folder = tmp_path / "mount"
    data = folder / "..2026_11_27_14_00_00.1"
    data.mkdir(parents=True)
    _write(data, "qwen.yaml", _user("qwen", model="Qwen/Qwen2.5-32B-Instruct"))
    (folder / "..data").symlink_to(data.name)
    (folder / "qwen.yaml").symlink_to("..data/qwen.yaml")
    profiles, problems = load_profile_dir(folder)
    assert [p.name for p in profiles] == ["qwen"]
    assert problems == []


def test_a_directory_that_cannot_serve_is_one_problem_and_the_shipped_catalog(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    cases = ((tmp_path / "absent", "cannot read"), (tmp_path / "file", "not a directory"),
             (tmp_path / "loop", "cannot read"), (Path(os.devnull), "not a directory"))
    for folder, why in cases:
        catalog, problems = catalog_from_dir(folder)
        assert catalog == shipped_catalog()
        assert len(problems) == 1
        assert why in problems[0]


def test_too_many_files_are_bounded(tmp_path: Path) -> None:
    for i in range(MAX_DIR_PROFILES + 3):
        _write(tmp_path, f"p{i:03}.yaml", _user(f"p{i}", tensor_parallel_size=i + 1))
    profiles, problems = load_profile_dir(tmp_path)
    assert len(profiles) == MAX_DIR_PROFILES
    assert len(problems) == 1
    assert "more than" in problems[0]


@pytest.mark.parametrize("written", ["8e-07", "8E-7", "8.0e-7", "0.8e-6", "+8e-07"])
def test_exponent_floats_read_as_numbers_as_helm_writes_them(written: str) -> None:
    """PyYAML alone reads ``8e-07`` as a string: a profile rendered by Helm's toYaml would fail."""
    document = _user("exp")
    document["prefill"]["latency"]["per_token_squared_ms"] = 8.0e-7
    text = yaml.safe_dump(document).replace("per_token_squared_ms: 8.0e-07", f"per_token_squared_ms: {written}")
    assert written in text
    assert parse_profile(text).prefill.latency.per_token_squared_ms == pytest.approx(8e-7)
