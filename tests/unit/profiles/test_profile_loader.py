"""Loading, validating and rejecting profiles."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from joulescale import profiles
from joulescale.profiles import ProfileError, load_profile, load_profile_file, loader, parse_profile

SHIPPED = [
    "a100-sxm4-80gb-llama-8b-tp1",
    "h100-sxm-llama-70b-tp2",
    "h100-sxm-llama-70b-tp4",
    "h100-sxm-llama-70b-tp8",
    "h100-sxm-llama-8b-tp1",
    "h200-sxm-llama-70b-tp2",
    "h200-sxm-llama-70b-tp4",
    "h200-sxm-llama-8b-tp1",
]


def _document(name: str = "h100-sxm-llama-70b-tp4") -> dict[str, object]:
    return load_profile(name).model_dump(mode="json", exclude_none=True)


def _set(document: dict[str, object], dotted: str, value: object) -> dict[str, object]:
    *parents, leaf = dotted.split(".")
    node = document
    for part in parents:
        child = node[part]
        assert isinstance(child, dict)
        node = child
    node[leaf] = value
    return document


def test_the_design_and_generated_profiles_are_shipped() -> None:
    assert profiles.list_profiles() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_cites_sources_and_names_itself(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.schema_version == profiles.SCHEMA_VERSION
    assert profile.source
    assert profile.min_sm_clock_mhz < profile.max_sm_clock_mhz


@pytest.mark.parametrize("name", SHIPPED)
def test_kv_capacity_matches_its_documented_derivation(name: str) -> None:
    profile = load_profile(name)
    assert profiles.derived_kv_capacity_tokens(profile) == profile.kv_capacity_tokens


def test_h100_clock_grid_is_345_to_1980_in_15_mhz_steps() -> None:
    clocks = load_profile("h100-sxm-llama-70b-tp8").supported_sm_clocks_mhz
    assert clocks[0] == 345
    assert clocks[-1] == 1980
    assert {b - a for a, b in itertools.pairwise(clocks)} == {15}


def test_a_profile_round_trips_through_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(_document()), encoding="utf-8")
    assert load_profile_file(path) == load_profile("h100-sxm-llama-70b-tp4")


def test_an_explicit_clock_list_is_sorted_and_deduplicated() -> None:
    document = _set(_document(), "sm_clocks", {"list_mhz": [1410, 1005, 1200, 1005]})
    profile = parse_profile(yaml.safe_dump(document))
    assert profile.supported_sm_clocks_mhz == (1005, 1200, 1410)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decode.power.gamma", -1.0),
        ("prefill.clock_sensitivity.compute", 1.5),
        ("tensor_parallel_size", 0),
        ("kv_bytes_per_token", "a lot"),
        ("decode.latency.base_ms", -3),
        ("schema_version", 2),
        ("source", []),
    ],
)
def test_an_invalid_value_is_rejected_naming_its_field(field: str, value: object) -> None:
    document = _set(_document(), field, value)
    with pytest.raises(ProfileError, match=field.replace(".", r"\.")):
        parse_profile(yaml.safe_dump(document), origin="bad.yaml")


def test_a_missing_field_is_rejected_naming_it() -> None:
    document = _document()
    del document["idle_power_watts"]
    with pytest.raises(ProfileError, match="idle_power_watts"):
        parse_profile(yaml.safe_dump(document))


def test_an_unknown_field_is_rejected_naming_it() -> None:
    document = _set(_document(), "prefill.power.gama", 2.0)
    with pytest.raises(ProfileError, match=r"prefill\.power\.gama"):
        parse_profile(yaml.safe_dump(document))


def test_a_clock_grid_that_does_not_end_on_a_step_is_rejected() -> None:
    document = _set(_document(), "sm_clocks", {"min_mhz": 345, "max_mhz": 1981, "step_mhz": 15})
    with pytest.raises(ProfileError, match="sm_clocks"):
        parse_profile(yaml.safe_dump(document))


def test_a_power_floor_above_the_power_limit_is_rejected_naming_both() -> None:
    document = _set(_document(), "power_limit_watts", 100)
    with pytest.raises(ProfileError, match="power_limit_watts"):
        parse_profile(yaml.safe_dump(document))


def test_an_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match="h100-sxm-llama-8b-tp1"):
        load_profile("h100-pcie-llama-405b-tp16")


def test_malformed_yaml_and_missing_files_become_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not valid YAML"):
        parse_profile("a: [unclosed")
    with pytest.raises(ProfileError, match="mapping"):
        parse_profile("- just\n- a list\n")
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile_file(tmp_path / "absent.yaml")


def test_the_public_namespace_is_exactly_all() -> None:
    public = {name for name in vars(profiles) if not name.startswith("_")}
    modules = {"architecture", "catalog", "derived", "generate", "hardware", "loader", "memory", "model", "perfdb",
               "physics", "settle"}
    assert public - modules == set(profiles.__all__)


# --- hostile profile files: one ProfileError, one line, naming the file and the field, at once ---


def _yaml(document: dict[str, object]) -> str:
    return yaml.safe_dump(document, sort_keys=False)


def _good_text() -> str:
    return _yaml(_document())


HOSTILE_VALUES: list[tuple[str, object]] = [
    ("prefill.power.fmax_watts", float("inf")),
    ("decode.latency.per_sequence_ms", float("inf")),
    ("power_limit_watts", float("inf")),
    ("gpu_memory_mib", 10**30),
    ("kv_capacity_tokens", 2**64),
    ("power_limit_watts", "700"),  # a string where a number goes
    ("tensor_parallel_size", True),
    ("schema_version", True),
    ("clock_settle_ms", 1e12),
    ("sm_clocks", {"min_mhz": 345, "max_mhz": 1_000_000_005, "step_mhz": 15}),  # a billion-entry grid
    ("sm_clocks", {"list_mhz": list(range(1, 5000))}),
    ("decode.clock_sensitivity.half_batch_size", 1e300),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE_VALUES, ids=[f"{f}={v!r:.30}" for f, v in HOSTILE_VALUES])
def test_a_hostile_value_is_refused_naming_the_file_and_field(tmp_path: Path, field: str, value: object) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(_yaml(_set(_document(), field, value)), encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile_file(path)
    message = str(caught.value)
    assert message.startswith(f"profile {path}: ")
    assert f"field '{field}" in message
    assert "\n" not in message


def _hostile_texts() -> list[tuple[str, str, str]]:
    """(case, file text, what the one-line message names)."""
    good = _good_text()
    anchored = good.replace("prefill:\n", "prefill: &p\n", 1) + "x: *p\n"
    return [
        ("duplicate key", good + "power_limit_watts: 5000\n", "duplicate key 'power_limit_watts'"),
        ("anchors", anchored, "aliases are not allowed"),
        ("alias bomb", "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nsource: [*c, *c]\n", "aliases"),
        ("unclosed", "a: [unclosed\n", "line 2 column 1"),
        ("bad indentation", good + "  - stray: 1\n    bad: [\n", "not valid YAML: line"),
        ("deep nesting", "description: " + "[" * 20_000 + "\n", "not valid YAML"),
        ("overflowing float", good.replace("power_limit_watts: 700.0", "power_limit_watts: 1.0e+309"),
         "field 'power_limit_watts'"),
        ("large file", good + ("# comment\n" * 120_000), "larger than the 65536 byte limit"),
        ("5000-digit integer", good.replace("gpu_memory_mib: 81559", "gpu_memory_mib: " + "9" * 5000),
         "not valid YAML"),
        ("impossible date", good + "when: 2023-13-45\n", "not valid YAML: month must be in 1..12"),
    ]


@pytest.mark.parametrize(("case", "text", "named"), _hostile_texts(), ids=[c for c, _, _ in _hostile_texts()])
def test_a_hostile_profile_text_is_refused_in_one_line(tmp_path: Path, case: str, text: str, named: str) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile_file(path)
    message = str(caught.value)
    assert message.startswith(f"profile {path}: ") or message.startswith(f"profile file {path}: ")
    assert named in message
    assert "\n" not in message


@pytest.mark.parametrize("parser", ["libyaml", "python"])
def test_both_yaml_parsers_refuse_aliases_and_duplicate_keys(parser: str) -> None:
    chosen = loader._ProfileLoader if parser == "libyaml" else loader._PyProfileLoader
    with pytest.raises(yaml.YAMLError, match="aliases are not allowed"):
        yaml.load("a: &a [x, x]\nb: [*a, *a]\n", Loader=chosen)
    with pytest.raises(yaml.YAMLError, match="duplicate key 'a'"):
        yaml.load("a: 1\nb: 2\na: 3\n", Loader=chosen)
    assert yaml.load("a: [1, 2]\n", Loader=chosen) == {"a": (1, 2)}


_DRIVER = """
import json, sys, time
from joulescale.profiles import ProfileError, load_profile_file
results = {}
for path in sys.argv[1:]:
    started = time.perf_counter()
    try:
        load_profile_file(path)
        results[path] = ["loaded", ""]
    except ProfileError as error:
        results[path] = ["refused", str(error)]
    results[path].append(time.perf_counter() - started)
print(json.dumps(results))
"""


def test_devices_pipes_folders_and_binary_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"schema_version: 1\nname: \xff\xfe\x00\x01\n")
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(_good_text().replace("description: ", "description: caf\xe9 ").encode("latin-1"))
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    expected = {"/dev/zero": "not a regular file", str(fifo): "not a regular file", str(link): "not a regular file",
                str(folder): "not a regular file", str(binary): "line 2: NUL byte", str(latin): "not UTF-8"}
    done = subprocess.run([sys.executable, "-c", _DRIVER, *expected], capture_output=True, text=True, timeout=20,
                          check=True)
    results = json.loads(done.stdout)
    for path, named in expected.items():
        verdict, message, seconds = results[path]
        assert verdict == "refused", (path, message)
        assert named in message, (path, message)
        assert path in message
        assert "\n" not in message
        assert seconds < 1.0
