"""``python -m e2e.simengine --role decode --port 8001 --sim-dir D --gpus GPU-a [--engine sglang] [--create-gpus]
[--hook-socket PATH]``"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from aiohttp import web

from e2e.simengine.core import EngineLimits, SimEngine
from e2e.simengine.hook import WireHook
from e2e.simengine.server import make_app
from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.engines.dialects import ENGINE_NAMES, dialect_for
from joulescale.profiles import load_profile
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile


async def serve(args: argparse.Namespace) -> None:
    profile = load_profile(args.profile)
    gpus = args.gpus.split(",")
    if args.create_gpus:
        SimGpuDir.create(args.sim_dir, specs_from_profile(profile, gpus))
    model = args.model or profile.model
    limits = EngineLimits(args.max_num_batched_tokens, args.max_num_seqs)
    engine = SimEngine(args.role, profile, SimGpuDir(args.sim_dir), gpus, dialect_for(args.engine), limits)
    hook = WireHook(args.hook_socket) if args.hook_socket else None
    engine.hook = hook
    runner = web.AppRunner(make_app(engine, model), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    scheduler = asyncio.create_task(engine.run())
    logging.info("simulated %s engine on %s:%d, GPUs %s", args.role, args.host, args.port, args.gpus)
    await stop.wait()
    scheduler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await scheduler
    if hook is not None:
        hook.close()
    await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m e2e.simengine")
    p.add_argument("--role", choices=("prefill", "decode"), required=True)
    p.add_argument("--engine", choices=ENGINE_NAMES, default="vllm", help="whose /metrics format to publish")
    p.add_argument("--profile", default="h100-sxm-llama-8b-tp1")
    p.add_argument(
        "--max-num-batched-tokens", type=int, default=DEFAULT_TOKEN_BUDGET, help="prefill token budget"
    )
    p.add_argument(
        "--max-num-seqs", type=int, default=EngineLimits.max_running, help="decode batch size limit"
    )
    p.add_argument("--model", default="")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sim-dir", type=Path, required=True)
    p.add_argument("--gpus", required=True, help="comma-separated simulated GPU UUIDs of this instance")
    p.add_argument(
        "--hook-socket", default="", help="publish the engine hook's messages to this socket (the agent binds it)"
    )
    p.add_argument(
        "--create-gpus", action="store_true", help="(re)write the sim dir's gpus.json for these GPUs"
    )
    logging.basicConfig(level=logging.INFO)
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
