"""The agent's command line refuses hostile input with exit status 2 and one line naming the
argument, before anything touches a GPU; good input still parses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from joulescale_agent.main import parse_args

BASE = ["--backend", "simulated", "--sim-dir", "/nonexistent-sim", "--instances", "/nonexistent.json"]
DURATIONS = [
    "--scrape-timeout-s",
    "--stale-after-s",
    "--readback-after-s",
    "--min-hold-s",
    "--parse-budget-s",
    "--relock-backoff-s",
    "--relock-backoff-max-s",
    "--hook-stale-after-s",
]

HOSTILE: list[tuple[list[str], str]] = [
    *[
        (["--scrape-hz", v], "--scrape-hz")
        for v in ("nan", "inf", "-inf", "0", "-5", "1e9", "abc", "", "1e-320")
    ],
    *[
        ([flag, v], flag)
        for flag in DURATIONS
        for v in ("nan", "NaN", "inf", "1e400", "0", "-0.0", "-1", "x", "1e-9")
    ],
    *[(["--port", v], "--port") for v in ("0", "-1", "65536", "9" * 30, "1.5", "abc", "", "0x10")],
    (["--log-level", "LOUD"], "--log-level"),
    (["--log-level", ""], "--log-level"),
    (["--backend", "cuda"], "--backend"),
    (["--state-file", ""], "--state-file"),
    (["--sim-dir", ""], "--sim-dir"),
    (["--instances", ""], "--instances"),
    (["--profiles-dir", ""], "--profiles-dir"),
    (["--profiles-dir"], "--profiles-dir"),
    (["--host", ""], "--host"),
    (["--host", "h" * 1000], "--host"),
    (["--scrape-hz", "20", "--stale-after-s", "0.01"], "--stale-after-s"),
    (["--scrape-hz", "1" * 10_000], "--scrape-hz"),
    (["--scrape-hz"], "--scrape-hz"),
    (["--no-such-flag"], "--no-such-flag"),
    *[(["--readback-retries", v], "--readback-retries") for v in ("-1", "11", "1.5", "nan", "", "9" * 40)],
    (["--relock-backoff-s", "5", "--relock-backoff-max-s", "2"], "--relock-backoff-max-s"),
    (["--hook-dir", ""], "--hook-dir"),
    (["--hook-dir", "a\x00b"], "--hook-dir"),
]


@pytest.mark.parametrize(("extra", "named"), HOSTILE, ids=lambda v: repr(v)[:50])
def test_hostile_arguments_exit_2_with_one_line_naming_the_argument(
    extra: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args([*BASE, *extra])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert named in err
    assert len(err) < 400


def test_refusals_that_depend_on_other_arguments_or_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "kubeconfig"
    big.write_bytes(b"#" * (2 << 20))
    cases = [
        (["--backend", "simulated", "--instances", "i.json"], "--sim-dir"),
        (["--backend", "simulated", "--sim-dir", "d"], "--node-name"),
        (["--node-name", "Not_A_Node!", "--backend", "nvml"], "--node-name"),
        ([*BASE, "--state-file", str(tmp_path)], "--state-file"),
        ([*BASE, "--state-file", "/dev/zero"], "--state-file"),
        ([*BASE, "--state-file", "x" * 5000], "--state-file"),
        ([*BASE[:-1], "/dev/zero"], "--instances"),
        ([*BASE[:-1], str(tmp_path)], "--instances"),
        (["--node-name", "n1", "--kubeconfig", str(tmp_path / "missing")], "--kubeconfig"),
        (["--node-name", "n1", "--kubeconfig", "/dev/zero"], "--kubeconfig"),
        (["--node-name", "n1", "--kubeconfig", str(big)], "--kubeconfig"),
        (["--node-name", "n" * 300], "--node-name"),
    ]
    for argv, named in cases:
        with pytest.raises(SystemExit) as exited:
            parse_args(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert named in err, err


def test_valid_arguments_parse_with_their_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    args = parse_args(
        [*BASE, "--scrape-hz", "50", "--stale-after-s", "0.5", "--min-hold-s", "0.2", "--port", "9401"]
    )
    assert (args.scrape_hz, args.stale_after_s, args.min_hold_s, args.port) == (50.0, 0.5, 0.2, 9401)
    args = parse_args(["--node-name", "gpu-node-1.example", "--log-level", "debug"])
    assert (args.node_name, args.log_level, args.min_hold_s) == ("gpu-node-1.example", "DEBUG", None)
    assert math.isclose(args.scrape_hz, 20.0)


def test_the_loop_settings_reach_the_loop_from_the_command_line() -> None:
    args = parse_args(
        [
            *BASE,
            "--readback-retries",
            "0",
            "--parse-budget-s",
            "0.05",
            "--relock-backoff-s",
            "2",
            "--relock-backoff-max-s",
            "8",
        ]
    )
    assert (args.readback_retries, args.parse_budget_s, args.relock_backoff_s, args.relock_backoff_max_s) == (
        0,
        0.05,
        2.0,
        8.0,
    )
