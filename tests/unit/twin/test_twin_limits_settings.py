"""The bounds every twin input is checked against, and the settings that apply them."""

from __future__ import annotations

import argparse
import io
import math
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.cli import main
from joulescale.control.policy import ClockBounds, Slo
from joulescale.twin import limits
from joulescale.twin.limits import SettingError, check_work, finite_in, float_argument, int_argument, int_in
from joulescale.twin.settings import DEFAULT_POLICIES, ORACLE, CompareSettings

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(low=st.floats(-1e6, 1e6), span=st.floats(0.0, 1e6), value=st.floats(allow_nan=True, allow_infinity=True))
def test_finite_in_accepts_exactly_the_finite_numbers_in_the_interval(low: float, span: float, value: float) -> None:
    high = low + span
    inside = math.isfinite(value) and low <= value <= high
    if inside:
        assert finite_in(value, low, high) == value
    else:
        with pytest.raises(ValueError, match="must be"):
            finite_in(value, low, high)
    if inside and value == low:
        with pytest.raises(ValueError, match=r"\("):  # the open interval's message shows it open
            finite_in(value, low, high, low_open=True)


@pytest.mark.parametrize("value", [True, False, "5", None, [1.0], 1j])
def test_numbers_must_be_numbers_not_bools_or_text(value: object) -> None:
    with pytest.raises(ValueError, match="expected a"):
        finite_in(value, 0.0, 10.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a whole number"):
        int_in(value, 0, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a whole number"):
        int_in(5.0, 0, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "infinity", "1_000", "\u0663", "0x10", "1e", "",
                                  "1e309", "--1", "5 5", "1e1000"])
def test_a_number_argument_takes_plain_ascii_decimals_only(text: str) -> None:
    parse = float_argument(0.0, 1e6)
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)


@pytest.mark.parametrize(("text", "value"), [("5", 5.0), (" 2.5 ", 2.5), (".5", 0.5), ("1e3", 1000.0), ("+3", 3.0),
                                             ("7.", 7.0)])
def test_a_number_argument_reads_what_a_person_types(text: str, value: float) -> None:
    assert float_argument(0.0, 1e6)(text) == value


def test_an_integer_argument_refuses_everything_but_ascii_integers_in_range() -> None:
    parse = int_argument(1, 100)
    assert parse("7") == 7
    assert parse("+100") == 100
    assert parse(" 1 ") == 1
    for text in ("0", "101", "1.0", "1e2", "\u0661", "1_0", "true", "9" * 20, "", "-0x1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    with pytest.raises(argparse.ArgumentTypeError, match=r"\[1, 100\]"):
        parse("500")


def test_the_work_cap_is_inclusive_and_names_what_to_shrink() -> None:
    check_work(limits.MAX_SIMULATED_WORK / 16, 16, 1)
    with pytest.raises(SettingError, match="shorten the duration") as caught:
        check_work(limits.MAX_SIMULATED_WORK / 16, 16, 2)
    assert caught.value.setting == "work"
    check_work(300.0, 16, 3)  # the default run is far under the cap


def test_the_defaults_are_a_valid_run_of_every_policy_and_the_oracle() -> None:
    defaults = CompareSettings()
    assert defaults.policies == DEFAULT_POLICIES
    assert DEFAULT_POLICIES[-1] == ORACLE
    assert defaults.duration_s * defaults.gpus * 3 <= limits.MAX_SIMULATED_WORK


_FLOAT_FIELDS = [("load", 0.0, limits.MAX_LOAD, True), ("duration_s", 0.0, limits.MAX_DURATION_S, True),
                 ("scrape_period_s", limits.MIN_SCRAPE_PERIOD_MS / 1000, limits.MAX_PERIOD_MS / 1000, False),
                 ("scrape_delay_s", 0.0, limits.MAX_PERIOD_MS / 1000, False),
                 ("power_limit_watts", 0.0, limits.MAX_POWER_WATTS, True),
                 ("clock_settle_s", 0.0, limits.MAX_PERIOD_MS / 1000, False)]


@pytest.mark.parametrize(("field", "low", "high", "low_open"), _FLOAT_FIELDS, ids=[f[0] for f in _FLOAT_FIELDS])
def test_each_float_setting_is_refused_outside_its_bounds_naming_itself(field: str, low: float, high: float,
                                                                        low_open: bool) -> None:
    CompareSettings(**{field: high})  # type: ignore[arg-type]
    if not low_open:
        CompareSettings(**{field: low})  # type: ignore[arg-type]
    refused = [math.nan, math.inf, -math.inf, high * (1 + 1e-9), low - 1.0, *([low] if low_open else [])]
    for value in refused:
        with pytest.raises(SettingError) as caught:
            CompareSettings(**{field: value})  # type: ignore[arg-type]
        assert caught.value.setting == field, value
        assert field in str(caught.value)


@pytest.mark.parametrize(("changes", "setting"), [
    ({"gpus": 1}, "gpus"), ({"gpus": limits.MAX_GPUS + 1}, "gpus"), ({"gpus": 16.0}, "gpus"),
    ({"seed": limits.MAX_SEED + 1}, "seed"), ({"prefill_instances": 0}, "prefill_instances"),
    ({"slo": Slo(600.0, 100.0, 0)}, "slo.percentile"), ({"slo": Slo(600.0, 100.0, 101)}, "slo.percentile"),
    ({"slo": Slo(600.0, math.inf, 99)}, "slo.tpot_ms"), ({"slo": Slo(0.0, 100.0, 99)}, "slo.ttft_ms"),
    ({"bounds": ClockBounds(min_mhz=-1, max_mhz=1980)}, "bounds.min_mhz"),
    ({"bounds": ClockBounds(min_mhz=300, max_mhz=limits.MAX_CLOCK_MHZ + 1)}, "bounds.max_mhz"),
    ({"policies": ()}, "policies"), ({"policies": ("static-max", "fastest")}, "policies"),
    ({"kv_medium": "pigeon"}, "kv_medium"), ({"view": "omniscient"}, "view"), ({"engine": "tgi"}, "engine"),
])
def test_other_settings_are_refused_naming_themselves(changes: dict[str, object], setting: str) -> None:
    with pytest.raises(SettingError) as caught:
        CompareSettings(**changes)  # type: ignore[arg-type]
    assert caught.value.setting == setting
    assert "\n" not in str(caught.value)


def test_a_policy_listed_twice_is_refused_instead_of_run_and_printed_twice() -> None:
    """Found by these tests: ``--policies static-max,joulescale,joulescale`` simulated joulescale
    twice and printed two identical table rows, while the JSON (keyed by name) held one."""
    with pytest.raises(SettingError, match="joulescale listed more than once") as caught:
        CompareSettings(policies=("static-max", "joulescale", "oracle", "joulescale"))
    assert caught.value.setting == "policies"
    out, err = io.StringIO(), io.StringIO()
    assert main(["twin", "compare", "--no-cache", "--policies", "static-max,voltana,voltana"], out=out, err=err) == 2
    assert err.getvalue() == "joulescale: error: argument --policies: voltana listed more than once\n"
    assert out.getvalue() == ""


def test_every_settings_field_is_either_checked_or_free_of_bounds() -> None:
    """A new field must be added to the checks (or here, saying why it needs none)."""
    unchecked = {"trace", "profile", "prefill_profile", "cache_dir", "auto_ttft", "auto_tpot"}  # resolved (and refused) by compare
    checked = {f[0] for f in _FLOAT_FIELDS} | {"gpus", "seed", "prefill_instances", "slo", "bounds", "policies", "rate",
                                               "kv_medium", "view", "engine", "topology"}
    assert {f.name for f in fields(CompareSettings)} == unchecked | checked


def test_a_power_limit_at_a_phase_floor_is_refused_not_a_division_by_zero() -> None:
    """Found by these tests: ``--power-limit-watts 250`` (the TP4 profile's prefill floor) was
    accepted, capped prefill at 0 MHz and ended the run in a ZeroDivisionError traceback. At its
    floor a phase has no clock left to run at, so the limit must exceed every floor it binds."""
    from joulescale.profiles import load_profile
    from joulescale.twin.compare import compare

    floor = load_profile(CompareSettings().profile).prefill.power.floor_watts
    assert floor == 250.0
    with pytest.raises(SettingError, match=r"power limit 250 W leaves no clock for prefill") as caught:
        compare(CompareSettings(power_limit_watts=floor, gpus=8, duration_s=5.0, prefill_instances=1))
    assert caught.value.setting == "power_limit_watts"
    out, err = io.StringIO(), io.StringIO()
    code = main(["twin", "compare", "--no-cache", "--power-limit-watts", "250", "--gpus", "8"], out=out, err=err)
    assert code == 2
    assert err.getvalue().startswith("joulescale: error: argument --power-limit-watts: power limit 250 W leaves no")


@pytest.mark.parametrize("flag", ["--profile", "--prefill-profile"])
def test_a_profile_file_whose_own_limit_is_a_phase_floor_is_refused_naming_its_flag(tmp_path: Path, flag: str) -> None:
    """The same defect through a profile file: its validation lets the limit equal a floor."""
    from joulescale.profiles import load_profile

    shipped = Path(__file__).parents[3] / "joulescale" / "profiles" / "data" / f"{CompareSettings().profile}.yaml"
    text = shipped.read_text(encoding="utf-8")
    limit = load_profile(CompareSettings().profile).power_limit_watts
    capped = tmp_path / "floor-capped.yaml"
    capped.write_text(text.replace(f"power_limit_watts: {limit:g}", "power_limit_watts: 250", 1)
                      .replace(f"name: {CompareSettings().profile}", "name: floor-capped", 1), encoding="utf-8")
    assert "power_limit_watts: 250" in capped.read_text(encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = main(["twin", "compare", "--no-cache", flag, str(capped), "--gpus", "8", "--duration", "5"], out=out, err=err)
    assert code == 2
    assert err.getvalue() == (f"joulescale: error: argument {flag}: power limit 250 W leaves no clock for prefill on "
                              "profile floor-capped: it draws 250 W at its lowest clock; the limit must exceed it\n")
