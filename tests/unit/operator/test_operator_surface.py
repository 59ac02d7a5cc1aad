"""The operator package exports a deliberate surface, and the core stays free of the shells."""

from __future__ import annotations

import subprocess
import sys
import types

import joulescale_operator


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(joulescale_operator).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(joulescale_operator.__all__)


def test_the_api_package_imports_no_cluster_library() -> None:
    code = (
        "import sys, joulescale.api, joulescale.api.crd; "
        "print(sorted(m for m in ('kopf', 'kubernetes', 'joulescale_operator') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
