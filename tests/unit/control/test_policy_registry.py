"""One policy registry: the API's enum, the CRD, the twin's names and the factory all read it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from joulescale.api import crd
from joulescale.api.spec import EnergySpec, energy_policy_names
from joulescale.control import (
    OFF,
    PolicySettings,
    Slo,
    UnknownPolicyError,
    build_controller,
    policy_entries,
    policy_names,
)
from joulescale.control.registry import PolicyEntry, register, twin_variant
from joulescale.control.static import StaticPolicy
from joulescale.profiles import load_profile
from joulescale.twin.policies import policy_names as twin_policy_names
from joulescale.twin.settings import DEFAULT_POLICIES, ORACLE

PROFILE = load_profile("h100-sxm-llama-70b-tp4")


def test_the_apis_policy_enum_is_the_registry_plus_off() -> None:
    schema = crd.openapi_schema()["properties"]["spec"]["properties"]["energy"]["properties"]["policy"]
    assert schema["enum"] == [*policy_names(), OFF]
    assert list(energy_policy_names()) == schema["enum"]
    for name in schema["enum"]:
        assert EnergySpec.model_validate({"policy": name}).policy == name
    for entry in policy_entries():
        assert entry.summary in schema["description"]


def test_an_unregistered_policy_is_refused_naming_the_field_and_the_known_ones() -> None:
    with pytest.raises(ValidationError) as error:
        EnergySpec.model_validate({"policy": "turbo"})
    assert error.value.errors()[0]["loc"] == ("policy",)
    assert "unknown policy 'turbo'; known: static, voltana, biscale, joulescale, off" in str(error.value)


def test_the_twins_names_are_the_registrys_variants() -> None:
    assert twin_policy_names() == ("static-max", "static-best", "voltana", "biscale", "joulescale")
    assert (*twin_policy_names(), ORACLE) == DEFAULT_POLICIES
    assert twin_variant("static-best")[1].name == "static"
    assert twin_variant("static-best")[0].swept_clocks
    assert twin_variant("voltana")[1].decode_router == "ecoroute"
    assert {v.role for v in (twin_variant(n)[0] for n in twin_policy_names())} == {"reference", "baseline", "online"}
    with pytest.raises(UnknownPolicyError, match="known: static-max, static-best"):
        twin_variant("oracle")


def test_a_policys_settings_group_is_a_group_of_the_settings() -> None:
    for entry in policy_entries():
        if entry.settings_group is not None:
            assert hasattr(PolicySettings(), entry.settings_group), entry.name


def test_a_settings_group_must_exist() -> None:
    with pytest.raises(ValueError, match="no settings group 'turbo'"):
        register(PolicyEntry("turbo", StaticPolicy, "a typo", settings_group="turbo"))
    assert "turbo" not in policy_names()


def test_a_name_is_registered_once_and_off_is_reserved() -> None:
    for name in ("joulescale", OFF, "static-max"):
        with pytest.raises(ValueError, match="already taken"):
            register(PolicyEntry(name, StaticPolicy, "a clash"))


def test_the_factory_builds_the_named_policy_with_its_governor_and_settings() -> None:
    settings = PolicySettings(margin=0.2)
    controller = build_controller("biscale", PROFILE, Slo(600, 100), settings=settings, token_budget=2048)
    assert controller.policy.name == "biscale"
    assert controller.observes
    assert controller.governor.min_hold_s == 0.1
    assert controller.governor.allowed_mhz == PROFILE.supported_sm_clocks_mhz
    static = build_controller("static", PROFILE, Slo(600, 100), base_clock_mhz=1000)
    assert not static.observes
    assert static.policy.sm_clock_mhz == 1005  # type: ignore[attr-defined]
    with pytest.raises(UnknownPolicyError, match="unknown policy 'oracle'"):
        build_controller("oracle", PROFILE, Slo(600, 100))
