"""``--profiles-dir``: a real agent process loads user profiles and skips hostile files, once each."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.harness.agentprocs import http_get, start_agent, wait_for, write_instances
from joulescale.profiles import load_profile
from tests.agent.test_agent_process_safety import Node

USER_PROFILE = "my-h100-llama-8b-tp1"


def _profile_dir(folder: Path) -> list[str]:
    """A good user profile, and next to it the hostile files that must each be skipped (by name)."""
    folder.mkdir()
    good = load_profile("h100-sxm-llama-8b-tp1").model_dump(mode="json", exclude_none=True)
    good["name"] = USER_PROFILE
    (folder / "mine.yaml").write_text(yaml.safe_dump(good), encoding="utf-8")
    (folder / "typo.yaml").write_text(
        yaml.safe_dump({**good, "name": "t", "idle_powr_watts": 5}), encoding="utf-8"
    )
    (folder / "same-name.yml").write_text(yaml.safe_dump(good), encoding="utf-8")
    (folder / "bomb.yaml").write_text('a: &a ["x","x"]\nb: [*a,*a]\n', encoding="utf-8")
    (folder / "huge.yaml").write_bytes(b"#" * (1 << 20))
    (folder / "escape.yaml").symlink_to("/etc/passwd")
    (folder / "zero.yaml").symlink_to(os.devnull)
    (folder / "sub.yaml").mkdir()
    os.mkfifo(folder / "pipe.yaml")
    (folder / "notes.txt").write_text("not a profile, not read", encoding="utf-8")
    return [
        "typo.yaml",
        "same-name.yml",
        "bomb.yaml",
        "huge.yaml",
        "escape.yaml",
        "zero.yaml",
        "sub.yaml",
        "pipe.yaml",
    ]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    yield n
    n.stop()


def test_a_user_profile_from_the_directory_drives_an_instance_and_bad_files_are_logged_once(
    node: Node, tmp_path: Path
) -> None:
    bad = _profile_dir(tmp_path / "profiles")
    node.start_engine()
    write_instances(node.instances, [node.instance("decode-0", node.uuids, 1005, profile=USER_PROFILE)])
    agent = start_agent(
        node.sim_dir,
        node.state_file,
        node.instances,
        node.agent_port,
        tmp_path / "agent.log",
        "--profiles-dir",
        str(tmp_path / "profiles"),
    )
    node.procs.append(agent)
    # The static policy only runs when its profile resolves: the user's, by name.
    wait_for(lambda: node.locks() == [1005, 1005], 20, "clocks locked with the user profile")
    wait_for(lambda: http_get(f"http://127.0.0.1:{node.agent_port}/readyz")[0] == 200, 5, "ready")
    assert agent.poll() is None
    log = node.log()
    skipped = [line for line in log.splitlines() if "--profiles-dir" in line]
    for name in bad:
        assert sum(name in line for line in skipped) == 1, (name, skipped)
    assert len(skipped) == len(bad), skipped
    assert "root:" not in log  # nothing of a file outside the directory leaks into the log
    assert "Traceback" not in log


def test_a_missing_profile_directory_leaves_the_shipped_profiles(node: Node, tmp_path: Path) -> None:
    node.start_engine()
    node.set_static_clock(1005)
    agent = start_agent(
        node.sim_dir,
        node.state_file,
        node.instances,
        node.agent_port,
        tmp_path / "agent.log",
        "--profiles-dir",
        str(tmp_path / "absent"),
    )
    node.procs.append(agent)
    wait_for(lambda: node.locks() == [1005, 1005], 20, "clocks locked with the shipped profile")
    assert "argument --profiles-dir" in node.log()
