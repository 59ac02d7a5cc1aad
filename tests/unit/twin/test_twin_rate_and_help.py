"""Your traffic at your rate: --rate native|R, the rate and capacity window in the text, a
progress bar only on a terminal, and every option's default in its help."""

from __future__ import annotations

import argparse
import io

import pytest

from joulescale.cli import build_parser, main
from joulescale.control.policy import Slo
from joulescale.twin.capacity import window_requests
from joulescale.twin.compare import compare
from joulescale.twin.progress import Bar, bar_for
from joulescale.twin.report import preamble, to_json
from joulescale.twin.settings import CompareSettings
from joulescale.twin.traces import load_trace, scaled_window


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _subparsers(sub)
    return found


def test_every_option_of_every_command_shows_its_default_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    parsers = _subparsers(build_parser())
    assert {prog for prog, _ in parsers} >= {"joulescale", "joulescale twin", "joulescale twin compare",
                                              "joulescale twin synth", "joulescale twin steady",
                                              "joulescale profile generate"}
    missing = []
    for prog, parser in parsers:
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or "-h" in action.option_strings:
                continue
            if action.required:
                continue  # a required option has no default to show
            shown = formatter._expand_help(action) if action.help else ""
            if "default" not in shown:
                missing.append(f"{prog} {action.option_strings[0]}")
    assert missing == []
    assert main(["twin", "compare", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.67)" in text
    assert "(default: 600.0)" in text
    assert "(default: None)" in text


@pytest.mark.parametrize("rate", ["native", 3.0])
def test_a_given_rate_is_replayed_and_the_text_says_native_replayed_and_scale(rate: str | float) -> None:
    settings = CompareSettings(trace="azure-conv", duration_s=10.0, gpus=8, prefill_instances=1,
                               slo=Slo(600.0, 100.0, 90), rate=rate, policies=("static-max",))  # type: ignore[arg-type]
    result = compare(settings)
    trace = load_trace("azure-conv")
    native = trace.requests_per_second
    expected_rps = native if rate == "native" else float(rate)
    assert result.requests_per_second == pytest.approx(expected_rps)
    assert result.rate_scale == pytest.approx(expected_rps / native)
    assert len(result.requests) == len(scaled_window(trace, expected_rps / native, 10.0))
    line = preamble(result).splitlines()[1]
    assert line.startswith(f"rate: trace {native:.3g} req/s native; replayed at {expected_rps:.3g} req/s = ")
    assert ("the trace's own rate (--rate native)" if rate == "native" else f"--rate {expected_rps:g}") in line
    assert f"scale {expected_rps / native:.3g} x native" in line
    document = to_json(result)
    assert document["rate"] == {"mode": "native" if rate == "native" else "given", "native_requests_per_second": native,
                                "replayed_requests_per_second": pytest.approx(expected_rps),
                                "scale": pytest.approx(expected_rps / native)}


def test_without_a_rate_the_text_says_load_times_capacity_and_the_capacity_window() -> None:
    result = compare(CompareSettings(trace="azure-conv", duration_s=5.0, gpus=8, prefill_instances=1,
                                     slo=Slo(600.0, 100.0, 90), policies=("static-max",)))
    assert result.capacity is not None
    lines = preamble(result).splitlines()
    assert "= load 0.67 x static-max capacity" in lines[1]
    assert lines[2].startswith(f"capacity: {result.capacity.requests_per_second:.3g} req/s at static-max")
    assert f"window of {result.capacity.window_requests} requests" in lines[2]
    assert result.capacity.window_requests >= window_requests(90)  # 5 s holds fewer: the window was lengthened


def test_capacity_does_not_depend_on_a_duration_too_short_for_the_percentile() -> None:
    """At the rates probed, a 5 s or a 10 s window of azure-conv holds fewer than the 500 requests
    P99 needs: both searches run on the 500-request window, so they find the same capacity
    (before, each measured its own window, and the P99 of a few dozen requests is their maximum)."""
    base = dict(trace="azure-conv", gpus=8, prefill_instances=1, slo=Slo(600.0, 100.0, 99), policies=("static-max",))
    short = compare(CompareSettings(duration_s=5.0, **base))  # type: ignore[arg-type]
    longer = compare(CompareSettings(duration_s=10.0, **base))  # type: ignore[arg-type]
    assert short.capacity is not None
    assert longer.capacity is not None
    assert short.capacity.rate_scale == longer.capacity.rate_scale
    assert short.capacity.window_requests == longer.capacity.window_requests == window_requests(99)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_clears_its_line_and_stays_quiet_elsewhere() -> None:
    assert bar_for(io.StringIO()) is None
    terminal = _Terminal()
    bar = bar_for(terminal)
    assert isinstance(bar, Bar)
    bar("static-max: replaying", 1, 4)
    bar("done", 4, 4)
    bar.close()
    drawn = terminal.getvalue()
    assert "\r[######------------------] 1/4 static-max: replaying" in drawn
    assert "[########################] 4/4 done" in drawn
    assert drawn.endswith("\r")
    assert "\n" not in drawn
    out, err = io.StringIO(), _Terminal()
    assert main(["twin", "compare", "--trace", "azure-conv", "--duration", "5", "--gpus", "8", "--percentile", "90",
                 "--prefill-instances", "1", "--policies", "static-max", "--rate", "native", "--no-cache"],
                out, err) == 0
    assert "/" in err.getvalue()
    assert "static-max" in err.getvalue()
    assert "\r" not in out.getvalue()


def test_rate_flags_are_checked_and_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["twin", "compare", "--rate", "fast"]) == 2
    assert "argument --rate: expected a decimal number, got 'fast'" in capsys.readouterr().err
    assert main(["twin", "compare", "--slo-ttft-ms", "-3"]) == 2
    assert "argument --slo-ttft-ms" in capsys.readouterr().err
    # auto measures on a cluster before the split search: the GPU count is checked first all the same
    assert main(["twin", "compare", "--gpus", "4", "--slo-ttft-ms", "auto", "--duration", "5", "--no-cache"]) == 2
    assert "argument --gpus: 4 GPUs cannot hold one TP4 prefill" in capsys.readouterr().err
    with pytest.raises(ValueError, match="rate"):
        CompareSettings(rate=0.0)
