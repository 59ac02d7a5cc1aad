"""``joulescale-agent``: the node agent's command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from joulescale_agent import clock, errors
from joulescale_agent.agent import Agent
from joulescale_agent.control.corebrain import CoreBrainFactory
from joulescale_agent.control.instance import LoopSettings
from joulescale_agent.discovery.base import Discovery
from joulescale_agent.discovery.gpus import GPU_SOURCES, POD_SPEC_UNSAFE, PODRESOURCES
from joulescale_agent.discovery.static import StaticDiscovery
from joulescale_agent.exporter import AgentMetrics, make_app
from joulescale_agent.gpu.backend import GpuBackend
from joulescale_agent.safety.statefile import StateFile

log = logging.getLogger("joulescale_agent")
DEFAULT_POD_RESOURCES_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="joulescale-agent", description=__doc__)
    p.add_argument("--backend", choices=("nvml", "simulated"), default="nvml")
    p.add_argument("--sim-dir", type=Path, help="directory of the simulated GPUs (backend=simulated)")
    p.add_argument(
        "--state-file",
        type=Path,
        default=Path("/var/lib/joulescale/locked-gpus.json"),
        help="host path naming the GPUs this agent locked (reset after a crash)",
    )
    p.add_argument("--instances", type=Path, help="static instances file instead of Kubernetes discovery")
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME", ""))
    p.add_argument("--kubeconfig", type=Path, help="default: in-cluster configuration")
    p.add_argument(
        "--gpu-source",
        choices=GPU_SOURCES,
        default=PODRESOURCES,
        help=f"where a pod's GPUs come from: the kubelet's PodResources API, or ({POD_SPEC_UNSAFE}) "
        "the pod's own annotation or NVIDIA_VISIBLE_DEVICES, which any tenant can forge: only for "
        "nodes without the kubelet API that serve one trusted tenant",
    )
    p.add_argument(
        "--pod-resources-socket",
        type=Path,
        default=None,
        help=f"kubelet PodResources socket (default {DEFAULT_POD_RESOURCES_SOCKET})",
    )
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=9400, help="metrics, /healthz and /readyz")
    p.add_argument("--scrape-hz", type=float, default=20.0)
    p.add_argument("--scrape-timeout-s", type=float, default=0.2)
    p.add_argument("--stale-after-s", type=float, default=1.0)
    p.add_argument("--readback-after-s", type=float, default=0.2)
    p.add_argument(
        "--min-hold-s",
        type=float,
        default=None,
        help="minimum time a new clock is held (default: the core governor's, 0.1 s)",
    )
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def make_backend(args: argparse.Namespace) -> GpuBackend:
    if args.backend == "simulated":
        from joulescale_agent.gpu.simulated import SimulatedBackend

        if args.sim_dir is None:
            raise SystemExit("--sim-dir is required with --backend simulated")
        return SimulatedBackend(args.sim_dir)
    from joulescale_agent.gpu.nvml import NvmlBackend

    return NvmlBackend()


def make_discovery(args: argparse.Namespace, backend: GpuBackend, registry: CollectorRegistry) -> Discovery:
    if args.instances is not None:
        return StaticDiscovery(args.instances)
    from joulescale_agent.discovery.gpus import GpuSource, PodSpecSource
    from joulescale_agent.discovery.kube import KubeDiscovery

    if not args.node_name:
        raise SystemExit("--node-name (or NODE_NAME) is required for Kubernetes discovery")
    gpus: GpuSource
    if args.gpu_source == POD_SPEC_UNSAFE:
        if args.pod_resources_socket is not None:
            raise SystemExit(f"--pod-resources-socket and --gpu-source={POD_SPEC_UNSAFE} exclude each other")
        log.warning(
            "GPU ids come from the pods themselves (%s): any tenant can name any GPU", POD_SPEC_UNSAFE
        )
        gpus = PodSpecSource()
    else:
        from joulescale_agent.discovery.podresources import PodResourcesSource

        by_index = {str(d.index): d.uuid for d in backend.devices()}
        socket = args.pod_resources_socket or DEFAULT_POD_RESOURCES_SOCKET
        gpus = PodResourcesSource(socket, index_to_uuid=lambda i: by_index.get(i, i))
    return KubeDiscovery.from_config(args.node_name, args.kubeconfig, gpus, registry)


async def serve(args: argparse.Namespace) -> int:
    settings = LoopSettings(
        scrape_hz=args.scrape_hz,
        scrape_timeout_s=args.scrape_timeout_s,
        stale_after_s=args.stale_after_s,
        readback_after_s=args.readback_after_s,
    )
    try:
        backend = make_backend(args)
    except errors.GpuError as error:
        log.error("no GPU backend: %s", error)
        return 2
    metrics = AgentMetrics()
    agent = Agent(
        backend=backend,
        state=StateFile(args.state_file),
        discovery=make_discovery(args, backend, metrics.registry),
        metrics=metrics,
        brains=CoreBrainFactory(args.min_hold_s),
        settings=settings,
        clock=clock.monotonic,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(make_app(agent.metrics, agent.health), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    log.info("agent up: backend=%s, %d GPUs, port %d", backend.name, len(backend.devices()), args.port)
    # Start-up objects live for the whole run: moving them out of the collector's generations
    # spares the 20 Hz control loops full collections of multiple milliseconds.
    gc.freeze()
    try:
        await agent.run(stop)
    finally:
        await runner.cleanup()
        backend.close()
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
