"""The control package's public surface is exactly its ``__all__``."""

from __future__ import annotations

import types

from joulescale import control


def test_the_public_namespace_is_exactly_all() -> None:
    public = {
        name
        for name, value in vars(control).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(control.__all__)


def test_every_exported_name_exists() -> None:
    for name in control.__all__:
        assert hasattr(control, name), name
