"""``python -m joulescale_agent.validate_gpu``: checks the NVML path on a real GPU.

For one GPU: lists the supported SM clocks, locks a few of them in turn and polls the SM clock
every millisecond until it reads back (the clock-change latency), resets and measures the
same, and reads the energy counter over a window against the power reading. The GPU's clocks
are reset on every exit path. Prints one JSON document (see docs/gpu-validation.md).
Needs root or CAP_SYS_ADMIN for the lock; without it, reports the permission error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from joulescale_agent import errors
from joulescale_agent.gpu.backend import GpuBackend

Sleep = Callable[[float], None]


def _poll_until(
    read: Callable[[], int],
    done: Callable[[int], bool],
    clock: Callable[[], float],
    sleep: Sleep,
    timeout_s: float,
    poll_s: float,
) -> tuple[float | None, int]:
    """Seconds until ``done(read())`` holds (None on timeout), and the last value read."""
    start = clock()
    value = read()
    while not done(value):
        if clock() - start > timeout_s:
            return None, value
        sleep(poll_s)
        value = read()
    return clock() - start, value


def _equals(target: int) -> Callable[[int], bool]:
    return lambda value: value == target


def pick_clocks(supported: tuple[int, ...], count: int) -> list[int]:
    """``count`` clocks spread over the supported range, from the top down (distinct)."""
    if count <= 1:
        return [supported[-1]]
    picks = {supported[round(i * (len(supported) - 1) / (count - 1))] for i in range(count)}
    return sorted(picks, reverse=True)


def validate(
    backend: GpuBackend,
    uuid: str,
    *,
    clock_count: int = 4,
    hold_s: float = 0.5,
    energy_window_s: float = 2.0,
    timeout_s: float = 1.0,
    poll_s: float = 0.001,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    supported = backend.supported_sm_clocks_mhz(uuid)
    report: dict[str, Any] = {
        "gpu": uuid,
        "supported_sm_clocks_mhz": {"min": supported[0], "max": supported[-1], "count": len(supported)},
        "default_sm_clock_mhz": backend.sm_clock_mhz(uuid),
        "locks": [],
    }
    try:
        for target in pick_clocks(supported, clock_count):
            backend.lock_sm_clock(uuid, target, target)
            latency_s, seen = _poll_until(
                lambda: backend.sm_clock_mhz(uuid), _equals(target), clock, sleep, timeout_s, poll_s
            )
            sleep(hold_s)
            report["locks"].append(
                {
                    "target_mhz": target,
                    "settle_s": latency_s,
                    "read_back_mhz": seen,
                    "read_back_after_hold_mhz": backend.sm_clock_mhz(uuid),
                    "throttle_reasons": int(backend.throttle_reasons(uuid)),
                }
            )
        locked_at = report["locks"][-1]["target_mhz"]
        backend.reset_sm_clock(uuid)
        reset_s, after = _poll_until(
            lambda: backend.sm_clock_mhz(uuid), lambda v: v != locked_at, clock, sleep, timeout_s, poll_s
        )
        report["reset"] = {"settle_s": reset_s, "read_back_mhz": after}
    except errors.GpuPermissionError as error:
        report["error"] = f"permission: {error}"
    finally:
        try:
            backend.reset_sm_clock(uuid)
        except errors.GpuError as error:
            report.setdefault("error", f"reset failed: {error}")
    e0, t0, p0 = backend.energy_mj(uuid), clock(), backend.power_watts(uuid)
    sleep(energy_window_s)
    e1, t1, p1 = backend.energy_mj(uuid), clock(), backend.power_watts(uuid)
    report["energy"] = {
        "window_s": t1 - t0,
        "energy_j": (e1 - e0) / 1000.0,
        "average_power_from_energy_watts": (e1 - e0) / 1000.0 / (t1 - t0) if t1 > t0 else None,
        "power_reading_watts": (p0 + p1) / 2.0,
    }
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m joulescale_agent.validate_gpu", description=__doc__)
    p.add_argument("--index", type=int, default=0, help="GPU index (ignored with --uuid)")
    p.add_argument("--uuid", default="")
    p.add_argument("--clocks", type=int, default=4, help="how many clocks to lock in turn")
    p.add_argument("--hold-s", type=float, default=0.5)
    p.add_argument("--energy-window-s", type=float, default=2.0)
    args = p.parse_args(argv)
    from joulescale_agent.gpu.nvml import NvmlBackend

    try:
        backend = NvmlBackend()
    except errors.GpuError as error:
        print(json.dumps({"error": f"NVML unavailable: {error}"}))
        sys.exit(2)
    try:
        devices = backend.devices()
        uuid = args.uuid or devices[args.index].uuid
        name = next((d.name for d in devices if d.uuid == uuid), "")
        report = validate(
            backend, uuid, clock_count=args.clocks, hold_s=args.hold_s, energy_window_s=args.energy_window_s
        )
        report["name"] = name
        print(json.dumps(report, indent=2))
    finally:
        backend.close()


if __name__ == "__main__":
    main()
