"""Load and validate profile data files; every failure becomes one ``ProfileError``."""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from joulescale.inputfile import InputFileError, read_bounded_text
from joulescale.profiles.model import GpuProfile

_DATA_PACKAGE = "joulescale.profiles"
_DATA_DIR = "data"
_SUFFIX = ".yaml"
MAX_PROFILE_BYTES = 64 * 1024
"""Shipped profiles are about 3 kB; 64 KiB leaves room for long source lists and comments, and
keeps loading even a hostile file at the cap to a fraction of a second."""


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
    """A profile from any YAML file, e.g. one measured on a real GPU.

    Read like any untrusted file (``joulescale.inputfile``): a regular file of at most
    ``MAX_PROFILE_BYTES`` UTF-8 bytes, so a device, a pipe or a huge file is refused at once.
    """
    try:
        text = read_bounded_text(path, MAX_PROFILE_BYTES)
    except InputFileError as error:
        raise ProfileError(f"profile file {path}: {error}") from error
    return parse_profile(text, origin=str(path))


def parse_profile(text: str, origin: str = "<text>") -> GpuProfile:
    """Validate YAML text; ``origin`` only labels error messages, which are always one line."""
    document = parse_yaml_mapping(text, origin)
    try:
        return GpuProfile.model_validate(document)
    except ValidationError as error:
        raise ProfileError(f"profile {origin}: {_describe(error)}") from None


def parse_yaml_mapping(text: str, origin: str = "<text>") -> dict[str, Any]:
    """YAML text to a mapping under the profile rules (size, no aliases or duplicate keys)."""
    if len(text) > MAX_PROFILE_BYTES:
        raise ProfileError(f"profile {origin}: larger than the {MAX_PROFILE_BYTES} byte limit")
    try:
        document = yaml.load(text, Loader=_ProfileLoader)
    except yaml.MarkedYAMLError as error:
        raise ProfileError(f"profile {origin}: not valid YAML: {_yaml_problem(error)}") from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError) as error:
        # Scalars are converted while loading: a 5000-digit integer or 2023-13-45 raise ValueError.
        why = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise ProfileError(f"profile {origin}: not valid YAML: {' '.join(why.split())}") from None
    if not isinstance(document, dict):
        raise ProfileError(f"profile {origin}: expected a mapping at the top level")
    return document


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A profile-like YAML file read as untrusted input (see ``load_profile_file``)."""
    try:
        text = read_bounded_text(path, MAX_PROFILE_BYTES)
    except InputFileError as error:
        raise ProfileError(f"profile file {path}: {error}") from error
    return parse_yaml_mapping(text, origin=str(path))


class _StrictConstructor(yaml.constructor.SafeConstructor):
    """Safe YAML, stricter: no duplicate keys (YAML keeps the last silently), no aliases (a few
    lines of them expand to billions of nodes), sequences as tuples (the strict model's lists)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node in self.constructed_objects or node in self.recursive_objects:
            # Constructing a node twice only happens when an alias refers back to it.
            raise yaml.constructor.ConstructorError(None, None, "aliases are not allowed", node.start_mark)
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key_node.value!r}",
                                                            key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _tuple(loader: Any, node: yaml.SequenceNode) -> tuple[object, ...]:
    return tuple(loader.construct_sequence(node, deep=True))


_StrictConstructor.add_constructor("tag:yaml.org,2002:seq", _tuple)


class _ProfileResolver(yaml.resolver.Resolver):
    """YAML 1.1 scalars plus YAML 1.2's exponent floats: PyYAML alone reads ``8e-07`` or
    ``1.5e6`` as strings, yet that is how Helm's ``toYaml`` (and most people) write them."""


_ProfileResolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


class _PyProfileLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
                       _StrictConstructor, _ProfileResolver):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _StrictConstructor.__init__(self)
        _ProfileResolver.__init__(self)


_ProfileLoader: type = _PyProfileLoader
"""libyaml's parser when PyYAML has it: the pure-Python one takes seconds for a few hundred kB."""
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CProfileLoader(CParser, _StrictConstructor, _ProfileResolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _StrictConstructor.__init__(self)
            _ProfileResolver.__init__(self)

    _ProfileLoader = _CProfileLoader


def _yaml_problem(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(error.problem or error.context or "malformed").split())


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(profile)"
        problems.append(f"field '{location}': {' '.join(item['msg'].split())}")
    return "; ".join(problems)


@functools.cache
def sm_clock_envelope_mhz() -> tuple[int, int]:
    """The lowest and the highest SM clock of any shipped profile: bounds outside them fit no GPU
    the agent can control (it only controls GPUs it has a profile for)."""
    profiles = [load_profile(name) for name in list_profiles()]
    return min(p.min_sm_clock_mhz for p in profiles), max(p.max_sm_clock_mhz for p in profiles)
