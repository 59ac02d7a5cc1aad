"""Measure one real GPU through the agent's own NvmlBackend: clock-change latency under load,
what a lock does on an idle GPU, and power and speed against the SM clock for a compute-bound
(bf16 GEMM) and a memory-bound (device copy) kernel. Needs PyTorch with CUDA. One JSON document.

Clocks are reset on every exit path. See docs/gpu-validation.md for how the figures are used.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import torch

from joulescale_agent.gpu.nvml import NvmlBackend

GEMM_N = 8192
COPY_BYTES = 2 << 30
WINDOW_S = 1.5


def window(backend: NvmlBackend, uuid: str, step: Any, work_per_step: float) -> dict[str, float]:
    """Run ``step`` back to back for WINDOW_S; work per second and average power from the energy counter."""
    step()
    torch.cuda.synchronize()
    steps = 0
    e0, t0 = backend.energy_mj(uuid), time.perf_counter()
    while time.perf_counter() - t0 < WINDOW_S:
        for _ in range(4):
            step()
        torch.cuda.synchronize()
        steps += 4
    t1, e1 = time.perf_counter(), backend.energy_mj(uuid)
    return {
        "rate": steps * work_per_step / (t1 - t0),
        "power_watts": (e1 - e0) / 1000.0 / (t1 - t0),
        "sm_clock_read_mhz": backend.sm_clock_mhz(uuid),
    }


def settle_latencies(backend: NvmlBackend, uuid: str, high: int, low: int, busy: Any) -> list[float | None]:
    """Alternate locks between two clocks while the GPU is busy; seconds until the SM clock reads the target."""
    out: list[float | None] = []
    for i in range(12):
        target = low if i % 2 == 0 else high
        for _ in range(600):
            busy()  # queue ~1 s of work so that the GPU stays busy through the poll
        time.sleep(0.05)
        t0 = time.perf_counter()
        backend.lock_sm_clock(uuid, target, target)
        latency = None
        while time.perf_counter() - t0 < 0.9:
            if backend.sm_clock_mhz(uuid) == target:
                latency = time.perf_counter() - t0
                break
            time.sleep(0.0005)
        out.append(latency)
        torch.cuda.synchronize()
    return out


def main() -> None:
    backend = NvmlBackend()
    uuid = backend.devices()[0].uuid
    supported = backend.supported_sm_clocks_mhz(uuid)
    f_max = supported[-1]
    report: dict[str, Any] = {
        "gpu": backend.devices()[0].name,
        "torch": torch.__version__,
        "supported_sm_clocks_mhz": {"min": supported[0], "max": f_max, "count": len(supported)},
    }
    a = torch.randn(GEMM_N, GEMM_N, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(GEMM_N, GEMM_N, device="cuda", dtype=torch.bfloat16)
    src = torch.empty(COPY_BYTES // 2, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)

    def gemm() -> None:
        torch.mm(a, b)

    def copy() -> None:
        dst.copy_(src)

    try:
        backend.reset_sm_clock(uuid)
        time.sleep(1.0)
        e0, t0 = backend.energy_mj(uuid), time.perf_counter()
        time.sleep(1.5)
        report["idle_default"] = {
            "power_watts": (backend.energy_mj(uuid) - e0) / 1000.0 / (time.perf_counter() - t0),
            "sm_clock_read_mhz": backend.sm_clock_mhz(uuid),
        }
        middle = min(supported, key=lambda f: abs(f - f_max * 0.6))
        backend.lock_sm_clock(uuid, middle, middle)
        time.sleep(0.3)
        report["idle_locked"] = {"target_mhz": middle, "read_mhz": backend.sm_clock_mhz(uuid)}
        time.sleep(1.0)
        report["idle_locked"]["read_after_1s_mhz"] = backend.sm_clock_mhz(uuid)
        backend.reset_sm_clock(uuid)

        low = min(supported, key=lambda f: abs(f - f_max * 0.5))
        latencies = settle_latencies(backend, uuid, 1380, low, gemm)
        reached = [x for x in latencies if x is not None]
        report["settle_under_load"] = {
            "pair_mhz": [1380, low],
            "samples_s": latencies,
            "median_s": statistics.median(reached) if reached else None,
            "max_s": max(reached) if reached else None,
        }
        sweep = []
        fractions = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4) if "--no-sweep" not in sys.argv else ()
        for fraction in fractions:
            f = min(supported, key=lambda c: abs(c - f_max * fraction))
            backend.lock_sm_clock(uuid, f, f)
            time.sleep(0.1)
            g = window(backend, uuid, gemm, 2.0 * GEMM_N**3 / 1e12)
            c = window(backend, uuid, copy, 2.0 * COPY_BYTES / 1e9)
            sweep.append(
                {
                    "sm_clock_mhz": f,
                    "gemm_tflops": g["rate"],
                    "gemm_power_watts": g["power_watts"],
                    "gemm_sm_clock_read_mhz": g["sm_clock_read_mhz"],
                    "copy_gb_per_s": c["rate"],
                    "copy_power_watts": c["power_watts"],
                    "copy_sm_clock_read_mhz": c["sm_clock_read_mhz"],
                }
            )
            print(json.dumps(sweep[-1]), file=sys.stderr, flush=True)
        report["sweep"] = sweep
        backend.reset_sm_clock(uuid)
        g = window(backend, uuid, gemm, 2.0 * GEMM_N**3 / 1e12)
        report["after_reset_gemm"] = g
    finally:
        backend.reset_sm_clock(uuid)
        backend.close()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
