"""``joulescale-agent``: the node agent's command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import os
import re
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web
from prometheus_client import CollectorRegistry

from joulescale.profiles import ProfileCatalog, catalog_from_dir
from joulescale_agent import clock, errors
from joulescale_agent.agent import Agent
from joulescale_agent.control.corebrain import CoreBrainFactory
from joulescale_agent.control.instance import LoopSettings
from joulescale_agent.discovery.base import Discovery
from joulescale_agent.discovery.gpus import GPU_SOURCES, POD_SPEC_UNSAFE, PODRESOURCES
from joulescale_agent.discovery.static import StaticDiscovery
from joulescale_agent.events import EventRecorder, NullEventRecorder
from joulescale_agent.exporter import AgentMetrics, make_app
from joulescale_agent.gpu.backend import GpuBackend
from joulescale_agent.safety.actuator import ClockActuator
from joulescale_agent.safety.statefile import StateFile

log = logging.getLogger("joulescale_agent")
DEFAULT_POD_RESOURCES_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")

EXIT_USAGE = 2
"""Bad command line, no GPU backend, or a port that cannot be bound."""
EXIT_STATE_LOCKED = 3
"""Another agent holds the state file: this one touches no GPU and exits."""
SCRAPE_HZ = (0.1, 1000.0)
DURATION_S = (0.001, 3600.0)
"""Accepted ranges: a period or duration below 1 ms or above an hour is a typo, not a setting."""
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class _Parser(argparse.ArgumentParser):
    """argparse that refuses bad input with one line naming the argument, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message[:300]}\n")


def _number(low: float, high: float) -> Callable[[str], float]:
    """A finite float in [low, high], for rates and durations."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(
                f"must be a finite number in [{low:g}, {high:g}], got {text[:40]!r}"
            )
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text[:40]!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port in [1, 65535], got {text[:40]!r}")
    return value


def _count(low: int, high: int) -> Callable[[str], int]:
    """A whole number in [low, high], for retry counts."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {text[:40]!r}")
        return value

    return parse


def _log_level(text: str) -> str:
    level = {"WARN": "WARNING"}.get(text.upper(), text.upper())
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(
            f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {text[:40]!r}"
        )
    return level


def _path(text: str) -> Path:
    if not text or "\x00" in text:
        raise argparse.ArgumentTypeError("must be a non-empty path")
    return Path(text)


MAX_CONFIG_BYTES = 1 << 20


def _file_problem(path: Path, required: bool, max_bytes: int | None) -> str | None:
    """Why ``path`` cannot serve as a small regular file the agent reads (None: it can)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "does not exist" if required else None
    except OSError as error:
        return f"cannot be checked: {error.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return "exists and is not a regular file"
    if max_bytes is not None and info.st_size > max_bytes:
        return f"is larger than {max_bytes} bytes"
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line; bad input exits 2 with one line naming the argument."""
    p = _Parser(prog="joulescale-agent", description=__doc__)
    p.add_argument("--backend", choices=("nvml", "simulated"), default="nvml")
    p.add_argument("--sim-dir", type=_path, help="directory of the simulated GPUs (backend=simulated)")
    p.add_argument(
        "--state-file",
        type=_path,
        default=Path("/var/lib/joulescale/locked-gpus.json"),
        help="host path naming the GPUs this agent locked (reset after a crash); locked by one agent",
    )
    p.add_argument("--instances", type=_path, help="static instances file instead of Kubernetes discovery")
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME", ""))
    p.add_argument("--kubeconfig", type=_path, help="default: in-cluster configuration")
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
        type=_path,
        default=None,
        help=f"kubelet PodResources socket (default {DEFAULT_POD_RESOURCES_SOCKET})",
    )
    p.add_argument(
        "--profiles-dir",
        type=_path,
        default=None,
        help="directory of extra profile files (*.yaml), e.g. a mounted ConfigMap; read at start, "
        "a bad file is logged and skipped",
    )
    p.add_argument(
        "--hook-dir",
        type=_path,
        default=None,
        help="directory of the engine hook sockets (<pod uid>.sock; a hostPath the engine pods share); "
        "unset: no hook, every instance in the metrics view",
    )
    p.add_argument(
        "--hook-stale-after-s",
        type=_number(*DURATION_S),
        default=0.5,
        help="a hook silent this long while the engine's page shows work: back to the metrics view",
    )
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=_port, default=9400, help="metrics, /healthz and /readyz")
    p.add_argument("--scrape-hz", type=_number(*SCRAPE_HZ), default=20.0)
    p.add_argument("--scrape-timeout-s", type=_number(*DURATION_S), default=0.2)
    p.add_argument("--stale-after-s", type=_number(*DURATION_S), default=1.0)
    p.add_argument(
        "--readback-after-s",
        type=_number(*DURATION_S),
        default=0.2,
        help="wait before reading a new clock back (an H200 took 70-190 ms to settle)",
    )
    p.add_argument(
        "--readback-retries",
        type=_count(0, 10),
        default=2,
        help="re-apply a lock whose read-back disagrees this often before releasing the group",
    )
    p.add_argument(
        "--parse-budget-s",
        type=_number(*DURATION_S),
        default=0.1,
        help="time one engine page may take to read (off the event loop); slower pages are unreadable",
    )
    p.add_argument(
        "--relock-backoff-s",
        type=_number(*DURATION_S),
        default=1.0,
        help="no new lock for this long after a fail-safe release; doubles while releases repeat",
    )
    p.add_argument(
        "--relock-backoff-max-s",
        type=_number(*DURATION_S),
        default=30.0,
        help="the longest re-lock back-off",
    )
    p.add_argument(
        "--min-hold-s",
        type=_number(*DURATION_S),
        default=None,
        help="minimum time a new clock is held on this node (default: the service's governor.minHoldMs)",
    )
    p.add_argument("--log-level", type=_log_level, default="INFO")
    p.add_argument(
        "--check",
        action="store_true",
        help="import everything the other flags need, then exit 0 (no cluster, GPU or port is touched)",
    )
    args = p.parse_args(argv)
    if args.backend == "simulated" and args.sim_dir is None:
        p.error("argument --sim-dir: required with --backend simulated")
    if args.instances is None and not args.node_name and not args.check:
        p.error("argument --node-name: required (or NODE_NAME) for Kubernetes discovery")
    if args.node_name and not _NODE_NAME.fullmatch(args.node_name):
        p.error(f"argument --node-name: not a Kubernetes node name: {args.node_name[:60]!r}")
    if args.stale_after_s < 1.0 / args.scrape_hz:
        p.error("argument --stale-after-s: must be at least one scrape period (1 / --scrape-hz)")
    if args.relock_backoff_max_s < args.relock_backoff_s:
        p.error("argument --relock-backoff-max-s: must be at least --relock-backoff-s")
    # Files the agent reads whole or replaces: a device (/dev/zero) or a FIFO would hang it, or
    # be replaced by a root process; a missing file is fine (created, or "no instances").
    files = (
        ("--state-file", args.state_file, False, None),  # a huge one is foreign: every GPU is reset
        ("--instances", args.instances, False, None),
        ("--kubeconfig", args.kubeconfig, True, MAX_CONFIG_BYTES),
    )
    for flag, path, required, max_bytes in files:
        problem = _file_problem(path, required, max_bytes) if path is not None else None
        if problem is not None:
            p.error(f"argument {flag}: {str(path)[:200]!r} {problem}")
    if not args.host or len(args.host) > 255:
        p.error("argument --host: must be a host name or address")
    return args


def make_backend(args: argparse.Namespace, now: clock.Clock = clock.monotonic) -> GpuBackend:
    if args.backend == "simulated":
        from joulescale_agent.gpu.simulated import SimulatedBackend

        return SimulatedBackend(args.sim_dir, now)
    from joulescale_agent.gpu.nvml import NvmlBackend

    return NvmlBackend()


def load_profiles(folder: Path | None) -> ProfileCatalog:
    """The shipped profiles plus those of ``--profiles-dir``; each bad file is logged and skipped,
    so a typo in one profile leaves the agent running (its instances refused with no-profile)."""
    catalog, problems = catalog_from_dir(folder)
    for problem in problems:
        log.warning("argument --profiles-dir: %s", problem[:1000])
    if folder is not None:
        log.info("profiles: %s", ", ".join(catalog.names()))
    return catalog


def make_discovery(
    args: argparse.Namespace,
    backend: GpuBackend,
    registry: CollectorRegistry,
    api: Any,
    events: EventRecorder,
    profiles: ProfileCatalog | None = None,
) -> Discovery:
    """Static discovery with an instances file, else Kubernetes discovery through ``api``."""
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
    return KubeDiscovery(api, args.node_name, gpus=gpus, profiles=profiles, registry=registry, events=events)


def make_kube(args: argparse.Namespace) -> tuple[Any, EventRecorder]:
    """The one API client (None with a static instances file) and the event writer using it:
    Events on pods with Kubernetes discovery, nobody to tell without."""
    if args.instances is not None:
        return None, NullEventRecorder()
    from joulescale_agent.kube_client import api_client
    from joulescale_agent.kube_events import KubeEventRecorder

    api = api_client(args.kubeconfig)
    return api, KubeEventRecorder(api, args.node_name)


def loop_settings(args: argparse.Namespace) -> LoopSettings:
    return LoopSettings(
        scrape_hz=args.scrape_hz,
        scrape_timeout_s=args.scrape_timeout_s,
        stale_after_s=args.stale_after_s,
        readback_after_s=args.readback_after_s,
        parse_budget_s=args.parse_budget_s,
        readback_retries=args.readback_retries,
        relock_backoff_s=args.relock_backoff_s,
        relock_backoff_max_s=args.relock_backoff_max_s,
        hook_dir=str(args.hook_dir) if args.hook_dir is not None else None,
        hook_stale_after_s=args.hook_stale_after_s,
    )


def make_agent(
    args: argparse.Namespace,
    *,
    backend: GpuBackend,
    state: StateFile,
    discovery: Discovery,
    profiles: ProfileCatalog,
    metrics: AgentMetrics,
    events: EventRecorder,
    now: clock.Clock = clock.monotonic,
) -> Agent:
    """The agent as the command line assembles it; ``now`` is the seam a virtual-time run (the
    twin's differential test) uses, every other part is the process's own."""
    return Agent(
        backend=backend,
        state=state,
        discovery=discovery,
        metrics=metrics,
        events=events,
        brains=CoreBrainFactory(args.min_hold_s, profiles),
        settings=loop_settings(args),
        clock=now,
    )


async def serve(args: argparse.Namespace) -> int:
    """Run the agent; the exit status says why it stopped (see EXIT_* and agent.EXIT_*)."""
    state = StateFile(args.state_file)
    try:
        state.acquire()  # before any GPU is touched: a second agent must not reset the first's locks
    except errors.StateFileLockedError as error:
        log.error("%s: refusing to start", error)
        return EXIT_STATE_LOCKED
    try:
        return await _serve(args, state)
    finally:
        state.release_lock()


async def _serve(args: argparse.Namespace, state: StateFile) -> int:
    try:
        backend = make_backend(args)
    except errors.GpuError as error:
        flag = "--sim-dir" if args.backend == "simulated" else "--backend"
        log.error("argument %s: no GPU backend: %s", flag, str(error)[:300].replace("\n", " "))
        return EXIT_USAGE
    metrics = AgentMetrics()
    events: EventRecorder = NullEventRecorder()
    profiles = await asyncio.to_thread(load_profiles, args.profiles_dir)
    try:
        try:
            api, events = make_kube(args)
            discovery = make_discovery(args, backend, metrics.registry, api, events, profiles)
        except Exception as error:  # a kubeconfig that is missing or malformed, no in-cluster config
            log.error("no discovery: %s: %s", type(error).__name__, str(error)[:300])
            ClockActuator(backend, state).recover(d.uuid for d in backend.devices())
            events.close()
            return EXIT_USAGE
        agent = make_agent(
            args,
            backend=backend,
            state=state,
            discovery=discovery,
            profiles=profiles,
            metrics=metrics,
            events=events,
        )
        runner = web.AppRunner(make_app(agent.metrics, agent.health), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, args.host, args.port).start()
        except OSError as error:
            await runner.cleanup()
            log.error(
                "argument --host/--port: cannot serve on %r port %d: %s", args.host[:100], args.port, error
            )
            # Nothing is controlled yet, but a predecessor's leftovers must not wait for us.
            ClockActuator(backend, state).recover(d.uuid for d in backend.devices())
            events.close()
            return EXIT_USAGE
    except BaseException:
        events.close()
        backend.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("agent up: backend=%s, %d GPUs, port %d", backend.name, len(backend.devices()), args.port)
    # Start-up objects live for the whole run: moving them out of the collector's generations
    # spares the 20 Hz control loops full collections of multiple milliseconds.
    gc.freeze()
    try:
        return await agent.run(stop)
    finally:
        await runner.cleanup()
        await asyncio.to_thread(events.close)  # Events still queued get a moment to go out
        try:
            backend.close()
        except errors.GpuError as error:
            log.warning("closing the GPU backend: %s", error)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.check:
        from joulescale_agent.selfcheck import run_check

        sys.exit(run_check(args))
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
