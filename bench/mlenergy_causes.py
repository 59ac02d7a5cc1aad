"""Why ``joulescale twin steady`` differs from ML.ENERGY's figures: one cause at a time.

Each row changes one thing against the shipped setup (the profile given, the ``lmarena-chat``
length mix, the twin's steady window) and prints J per output token and W per GPU at 32, 64, 128
and 256 sequences as a deviation from the published figures (bench/mlenergy_calibration.py):

- ``azure-conv lengths``: the Azure conversation trace's lengths instead of ML.ENERGY's task;
- ``no prompt``: one-token prompts, so (almost) no prefill work in the steps;
- ``prompts x0.5`` / ``x2``: the assumed prompt lengths halved or doubled (the one assumption of
  the mix, joulescale/twin/arena_lengths.py);
- ``ML.ENERGY window``: measured from the start over num_requests - N - 1 completions (1024
  requests, as ML.ENERGY's runs up to 384 sequences) instead of after a warm-up;
- ``no step overhead``: the profile without its ``step_overhead`` (the kernels' time alone);
- ``overhead with the GPU idle``: the same overhead with ``gpu_busy_share`` 0 (host time, the GPU
  at idle power meanwhile) and the same decode power curve.

``python -m bench.mlenergy_causes [--profile FILE]`` (a few seconds). docs/physics.md, "Checking
the twin against ML.ENERGY", holds its output for the shipped profile and the one before it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.mlenergy_calibration import PUBLISHED
from joulescale.profiles import load_profile
from joulescale.profiles.loader import load_profile_file
from joulescale.profiles.model import GpuProfile
from joulescale.twin import arena_lengths
from joulescale.twin.steady import SteadySettings, measure_steady

CHECKED = (32, 64, 128, 256)
ML_ENERGY_REQUESTS = 1024
BY_SEQS = {p.max_num_seqs: p for p in PUBLISHED}


def _mix_file(folder: Path, name: str, prompt: Callable[[int], int]) -> str:
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"timestamp": i, "input_length": prompt(p), "output_length": o}) + "\n"
                            for i, (p, o) in enumerate(arena_lengths.lengths())), encoding="utf-8")
    return str(path)


def _row(label: str, settings: Callable[[int], SteadySettings]) -> str:
    cells = []
    for n in CHECKED:
        result = measure_steady(settings(n))
        published = BY_SEQS[n]
        cells.append(f"{result.joules_per_output_token / published.joules_per_output_token - 1:+4.0%} / "
                     f"{result.watts_per_gpu / published.watts_per_gpu - 1:+4.0%}")
    return f"| {label} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="profile file (default: the shipped h100-sxm-llama-70b-tp4)")
    args = parser.parse_args(argv)
    profile: GpuProfile = load_profile_file(args.profile) if args.profile else load_profile("h100-sxm-llama-70b-tp4")
    print(f"J per token / W per GPU against ML.ENERGY, {profile.name}; columns: max_num_seqs {CHECKED}")
    print("| setup | " + " | ".join(str(n) for n in CHECKED) + " |")
    print("|---|" + "---|" * len(CHECKED))
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        no_prompt = _mix_file(folder, "no-prompt", lambda p: 1)
        half = _mix_file(folder, "half", lambda p: max(1, round(p / 2)))
        double = _mix_file(folder, "double", lambda p: 2 * p)
        rows: list[tuple[str, Callable[[int], SteadySettings]]] = [
            ("lmarena-chat (shipped)", lambda n: SteadySettings(profile, n)),
            ("azure-conv lengths", lambda n: SteadySettings(profile, n, mix="azure-conv")),
            ("no prompt", lambda n: SteadySettings(profile, n, mix=no_prompt)),
            ("prompts x0.5", lambda n: SteadySettings(profile, n, mix=half)),
            ("prompts x2", lambda n: SteadySettings(profile, n, mix=double)),
            ("ML.ENERGY window", lambda n: SteadySettings(profile, n, warmup_completions=0,
                                                          measured_completions=ML_ENERGY_REQUESTS - n - 1)),
        ]
        if profile.step_overhead is not None:
            bare = profile.model_copy(update={"step_overhead": None})
            idle = profile.model_copy(update={"step_overhead": profile.step_overhead.model_copy(
                update={"gpu_busy_share": 0.0})})
            rows.append(("no step overhead", lambda n: SteadySettings(bare, n)))
            rows.append(("overhead with the GPU idle", lambda n: SteadySettings(idle, n)))
        for label, settings in rows:
            print(_row(label, settings), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
