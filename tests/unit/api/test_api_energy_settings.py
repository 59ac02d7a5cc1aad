"""spec.energy's policy settings: the core's defaults, wire names with units, refusals that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from joulescale.api import crd
from joulescale.api.spec import EnergySpec
from joulescale.control.settings import GovernorSettings, PolicySettings, VoltanaSettings


def test_a_spec_that_sets_nothing_runs_the_cores_defaults() -> None:
    assert EnergySpec().policy_settings() == PolicySettings()


def test_the_wire_names_carry_units_and_reach_the_core() -> None:
    spec = EnergySpec.model_validate({
        "policy": "voltana",
        "margin": 0.2,
        "governor": {"minHoldMs": 250},
        "voltana": {"clocksMHz": [1005, 1410], "idleSeconds": 2.5, "maxTokensPerSecond": 9000},
        "joulescale": {"decodeIdleWindowSeconds": 1.0},
        "correction": {"bucketMHz": 90, "maxAgeSeconds": 2},
    })
    settings = spec.policy_settings()
    assert settings.margin == 0.2
    assert settings.governor == GovernorSettings(min_hold_ms=250)
    assert settings.governor.min_hold_s == 0.25
    assert settings.voltana == VoltanaSettings(clocks_mhz=(1005, 1410), idle_s=2.5, max_tokens_per_s=9000)
    assert settings.joulescale.decode_idle_window_s == 1.0
    assert (settings.correction.bucket_mhz, settings.correction.max_age_s) == (90, 2)
    assert spec.to_wire()["voltana"]["clocksMHz"] == [1005, 1410]


INVALID: list[tuple[dict[str, Any], tuple[str | int, ...]]] = [
    ({"margin": 0.95}, ("margin",)),
    ({"decode": {"kvGuardUsage": 1.5}}, ("decode", "kvGuardUsage")),
    ({"prefill": {"mpcHorizon": 0}}, ("prefill", "mpcHorizon")),
    ({"governor": {"minHoldMs": -1}}, ("governor", "minHoldMs")),
    ({"voltana": {"clocksMHz": [0]}}, ("voltana", "clocksMHz", 0)),
    ({"joulescale": {"promptQuantile": 0}}, ("joulescale", "promptQuantile")),
    ({"biscale": {"mpcLevel": 3}}, ("biscale", "mpcLevel")),
]


@pytest.mark.parametrize(("raw", "where"), INVALID, ids=[".".join(map(str, w)) for _, w in INVALID])
def test_invalid_settings_are_refused_naming_the_field(raw: dict[str, Any], where: tuple[str | int, ...]) -> None:
    with pytest.raises(ValidationError) as error:
        EnergySpec.model_validate(raw)
    assert [e["loc"] for e in error.value.errors()] == [where]


def test_the_crd_bounds_the_settings_and_documents_units() -> None:
    energy = crd.openapi_schema()["properties"]["spec"]["properties"]["energy"]["properties"]
    guard = energy["decode"]["properties"]["kvGuardUsage"]
    assert (guard["minimum"], guard["maximum"], guard["default"]) == (0.01, 1, 0.9)
    assert "milliseconds" in energy["governor"]["properties"]["minHoldMs"]["description"]
    assert energy["voltana"]["properties"]["clocksMHz"]["items"]["minimum"] == 1
    assert energy["joulescale"]["default"] == {}
