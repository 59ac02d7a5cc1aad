"""``joulescale-agent --check``: import everything the given flags need, touch nothing.

Some imports are lazy on purpose (pynvml only with the NVML backend, grpcio only with the
kubelet PodResources source, the engine hook's package only with ``--hook-dir``), so a missing package would otherwise surface only on a GPU node,
as a crash on start. The check imports them up front, without a cluster, a GPU or a socket: the
image build and the image test run it (tests/unit/test_images.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from joulescale_agent.discovery.gpus import PODRESOURCES


def modules_for(args: argparse.Namespace) -> tuple[str, ...]:
    """The modules the agent imports, at start or later, when run with ``args``."""
    modules = ["aiohttp.web", "prometheus_client", "joulescale_agent.agent"]
    if args.backend == "simulated":
        modules.append("joulescale_agent.gpu.simulated")
    else:
        from joulescale_agent.gpu.nvml import NVML_MODULE

        modules += ["joulescale_agent.gpu.nvml", NVML_MODULE]
    if getattr(args, "hook_dir", None) is not None:
        modules += ["joulescale_agent.control.hookfeed", "joulescale_hook.transport"]
    if args.instances is None:
        modules += [
            "joulescale_agent.kube_client",
            "joulescale_agent.kube_events",
            "joulescale_agent.discovery.kube",
        ]
        if args.gpu_source == PODRESOURCES:
            from joulescale_agent.discovery.podresources import GRPC_MODULE

            modules += ["joulescale_agent.discovery.podresources", GRPC_MODULE]
    return tuple(modules)


def run_check(args: argparse.Namespace) -> int:
    """0 when every module imports; 1 naming the first that does not."""
    modules = modules_for(args)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            print(f"joulescale-agent --check: cannot import {name}: {error}", file=sys.stderr)
            return 1
    print(f"joulescale-agent --check: ok ({len(modules)} modules: {', '.join(modules)})")
    return 0
