"""The class vLLM loads: ``--scheduler-cls joulescale_hook.vllm_scheduler.JouleScaleScheduler``.

Its base is vLLM's ``AsyncScheduler`` (the sync ``Scheduler`` would switch async scheduling off,
which vLLM warns costs latency). vLLM accepts one ``--scheduler-cls``; a deployment that already
uses its own scheduler class names it in ``JOULESCALE_HOOK_BASE_SCHEDULER`` (a qualified name,
resolved like vLLM resolves ``--scheduler-cls``) and passes ours, which then derives from it.

Importing this module imports vLLM (or the named base); nothing else in the package does.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from joulescale_hook.vllm_hook import HookedSchedulerMixin

BASE_ENV = "JOULESCALE_HOOK_BASE_SCHEDULER"
DEFAULT_BASE = "vllm.v1.core.sched.async_scheduler.AsyncScheduler"


def resolve_qualname(qualname: str) -> Any:
    module_name, _, attr = qualname.rpartition(".")
    if not module_name:
        raise ValueError(f"{BASE_ENV}={qualname!r} is not a qualified name (module.Class)")
    return getattr(importlib.import_module(module_name), attr)


def hooked(base: type) -> type:
    """``base`` with the hook's ``schedule`` and ``update_from_output`` over it."""
    return type("JouleScaleScheduler", (HookedSchedulerMixin, base),
                {"__module__": __name__, "__doc__": f"{base.__qualname__} publishing to the JouleScale agent."})


JouleScaleScheduler = hooked(resolve_qualname(os.environ.get(BASE_ENV) or DEFAULT_BASE))
