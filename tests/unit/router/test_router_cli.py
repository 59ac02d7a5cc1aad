"""The router's command line: the operator's flags in, one line naming the argument for bad ones."""

from __future__ import annotations

import pytest

from joulescale_router.main import main, parse_args


def test_the_operator_flags_become_endpoint_urls_paired_in_order() -> None:
    args = parse_args(
        ["--port", "9000", "--prefiller-hosts", "p1", "p2", "--prefiller-ports", "8001", "8002",
         "--decoder-hosts", "d.ns.svc", "fd00::1", "--decoder-ports", "8100"]
    )
    assert args.port == 9000
    assert args.prefill_urls == ["http://p1:8001", "http://p2:8002"]
    assert args.decode_urls == ["http://d.ns.svc:8100", "http://[fd00::1]:8100"]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        ([], "--prefiller-hosts"),
        (["--prefiller-hosts", "p"], "--decoder-hosts"),
        (["--prefiller-hosts", "p", "--decoder-hosts", "d", "--port", "0"], "--port"),
        (["--prefiller-hosts", "p", "--decoder-hosts", "d", "--port", "http"], "--port"),
        (["--prefiller-hosts", "p/x", "--decoder-hosts", "d"], "--prefiller-hosts"),
        (["--prefiller-hosts", "user@p", "--decoder-hosts", "d"], "--prefiller-hosts"),
        (["--prefiller-hosts", "", "--decoder-hosts", "d"], "--prefiller-hosts"),
        (["--prefiller-hosts", "p", "--decoder-hosts", "d\nx"], "--decoder-hosts"),
        (["--prefiller-hosts", "a", "b", "c", "--prefiller-ports", "1", "2", "--decoder-hosts", "d"],
         "--prefiller-ports"),
        (["--prefiller-hosts", "p", "--decoder-hosts", "d", "--timeout-s", "nan"], "--timeout-s"),
        (["--prefiller-hosts", "p", "--decoder-hosts", "d", "--timeout-s", "-1"], "--timeout-s"),
        (["--prefiller-hosts", "p", "--decoder-hosts", "d", "--timeout-s", "inf"], "--timeout-s"),
        (["--prefiller-hosts", "p", "--decoder-hosts", "d", "--log-level", "LOUD"], "--log-level"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_naming_the_argument(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert named in err


def test_check_needs_no_endpoints_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    assert "--check: ok" in capsys.readouterr().out
