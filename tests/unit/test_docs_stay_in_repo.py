"""No tracked file points at design notes that live outside the repository.

A reader of this repository cannot open notes kept beside it, so a docstring, a doc page or a
profile citation that sends them there is a dead end: the content it needs belongs in docs/.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Spelt in pieces so that this file does not match itself.
_NOTES = "|".join(("ARCHITECTURE", "ALGORITHMS", "ENGINES", "STYLE"))
OUTSIDE_REFERENCE = re.compile(
    rf"\b(?:{_NOTES})(?:\.md\b| +\d)" + r"|\.\./" + "shared" + r"\b|\b" + "shared" + "/design"
    # A bare section number ("the sect@ion-1 physics", without the @) points into a numbered outside document:
    # the repository's own pages are cited by their headings, in quotes.
    + r"|\b[Ss]" + r"ection[- ]\d"
    # So does a bare number of this project's own tracker: the reader has the code, not the issues.
    + r"|\(" + r"issue \d+(?:, item \d+)?\)"
)


def _tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.split("\0") if name]


def references(text: str) -> list[str]:
    return [match.group(0) for match in OUTSIDE_REFERENCE.finditer(text)]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        # "@" is removed before matching: it keeps these examples from matching this file.
        ("(ALGORITHMS@.md sect@ion 1)", True),
        ("EcoRoute (ALGORITHMS@ 5)", True),
        ("These follow `design/ENGINES@.md`.", True),
        ("see ../sha@red/design/STYLE@.md", True),
        ("see shared@/design/", True),
        ("names of ARCHITECTURE@.md", True),
        ("See [ARCHITECTURE](docs/architecture.md)", False),
        ("the algorithms of docs/policies.md", False),
        ("a shared@/ folder of the device machine", False),
        ("The sect@ion-1 physics", True),
        ("as in Sect@ion 3.2", True),
        ("docs/physics.md, \"Power and the power cap\"", False),
        ("a cross-section of the trace", False),
        ("Decision latency (iss@ue 4, item 5).", True),
        ("Core API (iss@ue 4)", True),
        ("delayed NCCL collectives (NVIDIA/nccl iss@ue 1551)", False),
    ],
)
def test_the_pattern_catches_pointers_to_the_outside_notes(text: str, found: bool) -> None:
    assert bool(references(text.replace("@", ""))) is found


def test_no_tracked_file_points_outside_the_repository() -> None:
    offenders = []
    for path in _tracked_files():
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if references(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not offenders, "point at docs/ instead:\n" + "\n".join(offenders)
