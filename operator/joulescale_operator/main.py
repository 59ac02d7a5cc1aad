"""`joulescale-operator`: run the operator (standalone, cluster-wide or in some namespaces)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import kopf

from joulescale_operator.enginehook import HookSettings
from joulescale_operator.handlers import build_registry
from joulescale_operator.settings import OperatorSettings


def _nonempty_path(text: str) -> Path:
    """A path; '' would silently mean the working directory."""
    if not text or "\x00" in text:
        raise argparse.ArgumentTypeError("must be a non-empty path")
    return Path(text)


def parse_settings(argv: Sequence[str] | None = None) -> tuple[OperatorSettings, bool, bool]:
    """The settings, --verbose and --check."""
    defaults = OperatorSettings()
    parser = argparse.ArgumentParser(prog="joulescale-operator", description=__doc__)
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="default: in-cluster, then ~/.kube/config"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable); default: all",
    )
    parser.add_argument(
        "--resync-interval-seconds",
        type=float,
        default=defaults.resync_interval_s,
        help="drift correction period",
    )
    parser.add_argument("--max-workers", type=int, default=defaults.max_workers, help="concurrent reconciles")
    parser.add_argument(
        "--liveness", default=defaults.liveness_endpoint, help="liveness endpoint URL; 'off' disables it"
    )
    parser.add_argument(
        "--profiles-dir",
        type=_nonempty_path,
        default=None,
        help="directory of extra profile files (*.yaml), as the agents get it; read at start",
    )
    parser.add_argument(
        "--hook-host-dir",
        default=defaults.hook.host_dir,
        help="node directory of the engine hook's sockets; the agents mount the same (chart: agent.hookHostDir)",
    )
    parser.add_argument(
        "--hook-image",
        default=None,
        help="image carrying the engine hook package; default: the hook image of this operator's version",
    )
    parser.add_argument("--verbose", action="store_true", help="log every handler run")
    parser.add_argument(
        "--check",
        action="store_true",
        help="import everything the operator runs with, then exit 0 (no cluster is touched)",
    )
    args = parser.parse_args(argv)
    settings = OperatorSettings(
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespace),
        resync_interval_s=args.resync_interval_seconds,
        max_workers=args.max_workers,
        liveness_endpoint=None if args.liveness == "off" else args.liveness,
        profiles_dir=args.profiles_dir,
        hook=HookSettings(host_dir=args.hook_host_dir, image=args.hook_image),
    )
    return settings, args.verbose, args.check


def check() -> int:
    """Reached only once this module's imports succeeded: the handlers, and through them kopf
    and the kubernetes client (the operator imports nothing lazily). No cluster is touched."""
    print(f"joulescale-operator --check: ok ({build_registry.__module__} imported)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    settings, verbose, check_only = parse_settings(argv)
    if check_only:
        return check()
    kopf.configure(verbose=verbose)
    kopf.run(
        registry=build_registry(settings),
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=settings.liveness_endpoint,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
