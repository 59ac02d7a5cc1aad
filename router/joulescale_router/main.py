"""``joulescale-router``: the P/D proxy's command line (the flags of vLLM's example proxy,
which the operator renders: ``--prefiller-hosts/--prefiller-ports``, ``--decoder-hosts/-ports``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message[:300]}\n")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text[:40]!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port in [1, 65535], got {text[:40]!r}")
    return value


def _host(text: str) -> str:
    if not text or len(text) > 253 or any(c in text for c in "/?#@ \t\r\n"):
        raise argparse.ArgumentTypeError(f"not a host name or address: {text[:60]!r}")
    return text


def endpoints(parser: argparse.ArgumentParser, flag: str, hosts: list[str], ports: list[int]) -> list[str]:
    """Base URLs from hosts and ports paired in order; one port serves every host."""
    if len(ports) == 1:
        ports = ports * len(hosts)
    if len(ports) != len(hosts):
        parser.error(f"argument {flag}-ports: give one port, or one per host ({len(hosts)})")
    return [f"http://[{h}]:{p}" if ":" in h else f"http://{h}:{p}" for h, p in zip(hosts, ports, strict=True)]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = _Parser(prog="joulescale-router", description=__doc__)
    p.add_argument("--host", type=_host, default="0.0.0.0")
    p.add_argument("--port", type=_port, default=8000)
    p.add_argument("--prefiller-hosts", type=_host, nargs="+", default=[])
    p.add_argument("--prefiller-ports", type=_port, nargs="+", default=[8000])
    p.add_argument("--decoder-hosts", type=_host, nargs="+", default=[])
    p.add_argument("--decoder-ports", type=_port, nargs="+", default=[8000])
    p.add_argument("--timeout-s", type=float, default=600.0, help="limit of one engine call")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--check", action="store_true", help="import everything needed, then exit 0")
    args = p.parse_args(argv)
    if not args.check and not (args.prefiller_hosts and args.decoder_hosts):
        p.error("arguments --prefiller-hosts and --decoder-hosts are required")
    if not 0.1 <= args.timeout_s <= 86400:
        p.error("argument --timeout-s: must be in [0.1, 86400]")
    args.prefill_urls = endpoints(p, "--prefiller", args.prefiller_hosts, args.prefiller_ports)
    args.decode_urls = endpoints(p, "--decoder", args.decoder_hosts, args.decoder_ports)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from aiohttp import web

    from joulescale_router.proxy import Proxy, ProxySettings

    if args.check:
        print("joulescale-router --check: ok (aiohttp, joulescale_router.proxy)")
        return 0
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    proxy = Proxy(ProxySettings(args.prefill_urls, args.decode_urls, timeout_s=args.timeout_s))
    web.run_app(proxy.app(), host=args.host, port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
