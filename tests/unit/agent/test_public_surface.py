"""The agent's public surface is exactly its ``__all__``, and the agent never imports the operator."""

from __future__ import annotations

import subprocess
import sys
import types

import joulescale_agent


def test_all_names_the_public_namespace_exactly() -> None:
    public = {
        name
        for name, value in vars(joulescale_agent).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(joulescale_agent.__all__)


def test_importing_every_agent_module_imports_neither_the_operator_nor_kopf() -> None:
    code = (
        "import sys, pkgutil, importlib, joulescale_agent\n"
        "for m in pkgutil.walk_packages(joulescale_agent.__path__, 'joulescale_agent.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('joulescale_operator', 'kopf')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
