"""The package's public surface is deliberate: __all__ is exactly what it exports."""

from __future__ import annotations

import types

import joulescale.api


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(joulescale.api).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(joulescale.api.__all__)
