"""Which profiles exist (shipped plus the user's), and the one rule that picks a profile.

The agent chooses an instance's profile with ``ProfileCatalog.match``, and the operator decides
whether a service's pods will have one with the same call, so the two never disagree.

The rule is exact: the GPU product, the model name and the tensor parallel size must all be
equal. There is no nearest match: another model, or the same model at another TP size, has other
latencies, other power and another KV capacity, and a policy predicting with it would miss the
SLO or waste energy without anyone noticing. An instance without a profile runs unmanaged, and
says so (the agent's ``no-profile`` refusal, the operator's ``DVFSActive=False NoProfile``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from joulescale.profiles.loader import ProfileError, list_profiles, load_profile, load_profile_file
from joulescale.profiles.model import GpuProfile

PROFILE_SUFFIXES = (".yaml", ".yml")
MAX_DIR_ENTRIES = 1024
"""Directory entries looked at: a ConfigMap holds a few dozen; a huge directory is not a catalog."""
MAX_DIR_PROFILES = 64
"""Profile files loaded from one directory (64 x 64 KiB at most: a bounded start-up cost)."""


@dataclass(frozen=True, slots=True)
class ProfileCatalog:
    """Profiles in precedence order: the user's first, then the shipped ones they do not replace."""

    profiles: tuple[GpuProfile, ...]

    def match(self, gpu_product: str, model: str, tensor_parallel_size: int) -> GpuProfile | None:
        """The profile of exactly this GPU product, model and TP size, or None (never a neighbour)."""
        for profile in self.profiles:
            if (profile.gpu_product == gpu_product and profile.model == model
                    and profile.tensor_parallel_size == tensor_parallel_size):
                return profile
        return None

    def get(self, name: str) -> GpuProfile:
        """A profile by name, user profiles included."""
        for profile in self.profiles:
            if profile.name == name:
                return profile
        known = ", ".join(sorted(p.name for p in self.profiles))
        raise ProfileError(f"unknown profile {name!r}; known: {known}")

    def names(self) -> list[str]:
        return sorted(p.name for p in self.profiles)


@functools.cache
def shipped_catalog() -> ProfileCatalog:
    """The profiles shipped with JouleScale."""
    return ProfileCatalog(tuple(load_profile(name) for name in list_profiles()))


def with_user_profiles(user: list[GpuProfile]) -> ProfileCatalog:
    """The shipped catalog with ``user`` ahead: a user profile of a shipped profile's name, or of
    its GPU product, model and TP size, replaces it (that is how a measured profile is installed)."""
    names = {p.name for p in user}
    shipped = tuple(p for p in shipped_catalog().profiles if p.name not in names)
    return ProfileCatalog((*user, *shipped))


def load_profile_dir(folder: str | Path) -> tuple[list[GpuProfile], list[str]]:
    """The valid profiles of a directory's ``*.yaml``/``*.yml`` files, and one line per file skipped.

    Never raises for a bad file: each is read with the strict, bounded loader and skipped with
    its reason. Hidden entries are ignored (a mounted ConfigMap keeps its data in ``..data``),
    files are taken in name order, and a link must stay inside the directory. Two files of the
    same name or of the same GPU product, model and TP size: the first (by file name) wins.
    """
    root = Path(folder)
    try:
        real_root = root.resolve(strict=True)
        if not real_root.is_dir():
            return [], [f"profile directory {root}: not a directory"]
        names = _entry_names(real_root)
    except (OSError, RuntimeError) as error:  # RuntimeError: a link loop, before Python 3.13
        why = getattr(error, "strerror", None) or error
        return [], [f"profile directory {root}: cannot read: {why}"]
    profiles: list[GpuProfile] = []
    names, problems = _printable(names)
    if len(names) > MAX_DIR_PROFILES:
        problems.append(f"profile directory {root}: more than {MAX_DIR_PROFILES} profile files; "
                        f"only the first {MAX_DIR_PROFILES} by name are read")
        names = names[:MAX_DIR_PROFILES]
    by_name: dict[str, str] = {}
    by_key: dict[tuple[str, str, int], str] = {}
    for name in names:
        path = root / name
        try:
            _check_inside(path, real_root)
            profile = load_profile_file(path)
        except ProfileError as error:
            problems.append(f"skipped: {error}")
            continue
        key = (profile.gpu_product, profile.model, profile.tensor_parallel_size)
        earlier = by_name.get(profile.name) or by_key.get(key)
        if earlier is not None:
            problems.append(f"skipped: profile file {path}: profile {profile.name!r} duplicates the "
                            f"name or the GPU product, model and TP size of {earlier}")
            continue
        by_name[profile.name] = by_key[key] = name
        profiles.append(profile)
    return profiles, problems


def catalog_from_dir(folder: str | Path | None) -> tuple[ProfileCatalog, list[str]]:
    """The shipped catalog, plus a directory's profiles when one is given; problems as lines."""
    if folder is None:
        return shipped_catalog(), []
    user, problems = load_profile_dir(folder)
    return with_user_profiles(user), problems


def is_profile_path(text: str) -> bool:
    """A path names a file (it has a ``/`` or a YAML suffix); anything else names a shipped profile."""
    return "/" in text or text.endswith(PROFILE_SUFFIXES)


def profile_by_name_or_path(text: str) -> GpuProfile:
    """A shipped profile by name, or a user's profile file by path (``./mine.yaml``)."""
    return load_profile_file(text) if is_profile_path(text) else load_profile(text)


def _entry_names(root: Path) -> list[str]:
    names: list[str] = []
    with os.scandir(root) as entries:
        for seen, entry in enumerate(entries):
            if seen >= MAX_DIR_ENTRIES:
                break
            if not entry.name.startswith(".") and entry.name.endswith(PROFILE_SUFFIXES):
                names.append(entry.name)
    return sorted(names)


def _printable(names: list[str]) -> tuple[list[str], list[str]]:
    """Names that fit one log line; the others are skipped (a newline would forge log lines)."""
    bad = [n for n in names if not n.isprintable()]
    return [n for n in names if n.isprintable()], [f"skipped: profile file {n!r}: control characters in the name"
                                                   for n in bad]


def _check_inside(path: Path, real_root: Path) -> None:
    """A link to a file elsewhere (``/etc/shadow``, another tenant's file) is not a profile."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError) as error:
        raise ProfileError(f"profile file {path}: cannot read: {getattr(error, 'strerror', None) or error}") from None
    if not target.is_relative_to(real_root):
        raise ProfileError(f"profile file {path}: links outside the profile directory")
