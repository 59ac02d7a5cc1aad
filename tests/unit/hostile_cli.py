"""Run the real ``joulescale`` command in a process and check how it refuses hostile input."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

Outcome = subprocess.CompletedProcess[str] | subprocess.TimeoutExpired

REFUSAL_TIMEOUT_S = 8.0
"""A refusal takes well under a second (about 0.5 s, mostly imports); the slack is for a loaded
CI machine. A hang or a simulation that runs is killed here and fails the test."""


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """``joulescale ARGV`` as a real process; raises ``TimeoutExpired`` if it does not end in time."""
    return subprocess.run([sys.executable, "-m", "joulescale.cli", *argv], capture_output=True, text=True,
                          timeout=REFUSAL_TIMEOUT_S, check=False)


def run_all(cases: Sequence[Sequence[str]]) -> list[Outcome]:
    """Every argv of ``cases`` as its own process, a few at a time (each is mostly imports)."""

    def one(argv: Sequence[str]) -> Outcome:
        try:
            return run_cli(*argv)
        except subprocess.TimeoutExpired as timeout:
            return timeout

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(one, cases))


def assert_refused(result: Outcome, *names: str) -> None:
    """Status 2, nothing on stdout, exactly one line on stderr that names every one of ``names``."""
    assert isinstance(result, subprocess.CompletedProcess), f"no answer within {REFUSAL_TIMEOUT_S} s"
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for name in names:
        assert name in lines[0], (name, lines[0])
