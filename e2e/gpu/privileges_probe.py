"""Which privileges does NVML clock locking need? Run once per privilege set by device_check.sh.

Uses the pynvml binding directly (not the agent) so that the answer is about the driver's check
alone. Prints one JSON line: the process's uid and effective capabilities, then the outcome of
each NVML call a node agent makes (read, lock, reset, energy).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import pynvml as nvml


def effective_caps() -> str:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return line.split()[1]
    return "?"


def attempt(report: dict[str, Any], name: str, call: Callable[[], Any]) -> None:
    try:
        value = call()
        report[name] = "ok" if value is None else value
    except nvml.NVMLError as error:
        report[name] = f"{type(error).__name__}: {error}"


def main() -> None:
    report: dict[str, Any] = {"mode": sys.argv[1], "uid": os.getuid(), "cap_eff": effective_caps()}
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        report["init"] = f"{type(error).__name__}: {error}"
        print(json.dumps(report))
        return
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    top_memory = max(nvml.nvmlDeviceGetSupportedMemoryClocks(handle))
    clocks = sorted(nvml.nvmlDeviceGetSupportedGraphicsClocks(handle, top_memory))
    middle = clocks[len(clocks) // 2]
    attempt(report, "read_sm_mhz", lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
    attempt(report, "energy_mj", lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    attempt(report, "lock", lambda: nvml.nvmlDeviceSetGpuLockedClocks(handle, middle, middle))
    attempt(report, "reset", lambda: nvml.nvmlDeviceResetGpuLockedClocks(handle))
    nvml.nvmlShutdown()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
