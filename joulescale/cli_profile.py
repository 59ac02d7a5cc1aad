"""``joulescale profile generate``: a profile's latency from AIConfigurator's database (docs/profiles.md)."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from joulescale.cli_paths import output_file
from joulescale.profiles.perfdb import ENGINES as DATABASE_ENGINES
from joulescale.twin import limits


def add_profile_commands(commands: Any) -> None:
    """The `profile` command group, on the parser's subcommands (argparse types them loosely)."""
    profile = commands.add_parser("profile", help="GPU profiles")
    profile_commands = profile.add_subparsers(dest="profile_command", required=True)
    gen = profile_commands.add_parser(
        "generate", help="fit a profile's latency to NVIDIA AIConfigurator's performance database",
        description="Fits the latency coefficients at f_max to the database's estimates over a grid of batch "
                    "sizes and lengths and prints the fit error. Needs pip install 'joulescale[profilegen]'.")
    gen.add_argument("--model", type=Path, required=True, help="the model's config.json, or a folder holding it")
    gen.add_argument("--model-name", default=None,
                     help="the served model name the profile matches (default: the config's _name_or_path)")
    gen.add_argument("--system", required=True, help="AIConfigurator system: h100_sxm, h200_sxm, a100_sxm, ...")
    gen.add_argument("--tp", type=limits.int_argument(1, 1024), required=True, help="tensor parallel size")
    gen.add_argument("--engine", choices=DATABASE_ENGINES, default="vllm", help="engine database")
    gen.add_argument("--power-from", default=None,
                     help="profile (name or file) or hardware file that gives clocks, power and settle time "
                          "(default: the shipped profile named like the output file)")
    gen.add_argument("--overhead-from", default=None,
                     help="profile (name or file) whose step_overhead (the engine's time per step beyond the "
                          "kernels, docs/physics.md) the new profile takes, or 'none' (default: the --power-from "
                          "profile's)")
    gen.add_argument("-o", "--output", type=output_file, required=True,
                     help="the profile file to write; its stem is the profile's name")


def run_profile_command(args: argparse.Namespace, argv: Sequence[str], out: TextIO) -> int:
    from joulescale.profiles.architecture import read_architecture
    from joulescale.profiles.generate import generate, to_yaml
    from joulescale.profiles.hardware import load_hardware, with_overhead_of
    from joulescale.profiles.loader import list_profiles
    from joulescale.profiles.perfdb import AiConfigurator

    output: Path = args.output
    name = output.stem
    power_from = args.power_from
    if power_from is None:
        if name not in list_profiles():
            raise ValueError("argument --power-from: required unless the output file is named like a shipped profile")
        power_from = name
    architecture = read_architecture(args.model)
    model_name = args.model_name or architecture.name
    if not model_name:
        raise ValueError("argument --model-name: the config has no _name_or_path; name the served model")
    hardware = load_hardware(power_from)
    if args.overhead_from is not None:
        hardware = with_overhead_of(hardware, args.overhead_from)
    database = AiConfigurator(args.model, args.system, args.engine, args.tp)
    try:
        generated = generate(database, architecture, hardware, name=name, model_name=model_name,
                             tensor_parallel_size=args.tp, command=shlex.join(["joulescale", *argv]))
    finally:
        database.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(to_yaml(generated), encoding="utf-8")
    print(f"database: {database.label}", file=out)
    print(f"fit error at f_max: prefill {generated.prefill.text()}", file=out)
    print(f"fit error at f_max: decode {generated.decode.text()}", file=out)
    print(f"wrote {output} (profile {name}, KV capacity {generated.profile.kv_capacity_tokens} tokens)", file=out)
    return 0
