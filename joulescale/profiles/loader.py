"""Load and validate profile data files; every failure becomes one ``ProfileError``."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from joulescale.profiles.model import GpuProfile

_DATA_PACKAGE = "joulescale.profiles"
_DATA_DIR = "data"
_SUFFIX = ".yaml"


class ProfileError(ValueError):
    """A profile is missing, unreadable or invalid; the message names the bad field."""


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    folder = resources.files(_DATA_PACKAGE).joinpath(_DATA_DIR)
    return sorted(
        entry.name.removesuffix(_SUFFIX) for entry in folder.iterdir() if entry.name.endswith(_SUFFIX)
    )


@functools.cache
def load_profile(name: str) -> GpuProfile:
    """A shipped profile by name (cached: profiles are immutable)."""
    if name not in list_profiles():
        raise ProfileError(f"unknown profile {name!r}; shipped: {', '.join(list_profiles())}")
    text = resources.files(_DATA_PACKAGE).joinpath(_DATA_DIR, name + _SUFFIX).read_text(encoding="utf-8")
    profile = parse_profile(text, origin=name)
    if profile.name != name:
        raise ProfileError(f"profile {name}: field 'name' is {profile.name!r}, expected the file name")
    return profile


def load_profile_file(path: str | Path) -> GpuProfile:
    """A profile from any YAML file, e.g. one measured on a real GPU."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ProfileError(f"profile file {path}: cannot read: {error}") from error
    return parse_profile(text, origin=str(path))


def parse_profile(text: str, origin: str = "<text>") -> GpuProfile:
    """Validate YAML text; ``origin`` only labels error messages."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ProfileError(f"profile {origin}: not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ProfileError(f"profile {origin}: expected a mapping at the top level")
    try:
        return GpuProfile.model_validate(document)
    except ValidationError as error:
        raise ProfileError(f"profile {origin}: {_describe(error)}") from error


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(profile)"
        problems.append(f"field '{location}': {item['msg']}")
    return "; ".join(problems)


@functools.cache
def sm_clock_envelope_mhz() -> tuple[int, int]:
    """The lowest and the highest SM clock of any shipped profile: bounds outside them fit no GPU
    the agent can control (it only controls GPUs it has a profile for)."""
    profiles = [load_profile(name) for name in list_profiles()]
    return min(p.min_sm_clock_mhz for p in profiles), max(p.max_sm_clock_mhz for p in profiles)
