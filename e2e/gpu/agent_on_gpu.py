"""The real agent process with the NVML backend on a real GPU, driven by a simulated engine.

A prefill and a decode simulated engine (loopback, Llama-8B TP1 physics) serve a light then a
heavy slice of the Azure conversation trace; the agent (``joulescale`` policy, static
discovery) controls the decode instance, whose GPU is the real one. A background GEMM keeps the
GPU busy as an engine would. The simulated engine's timing does not follow the real clock, so
this checks the actuation path, not the energy: real locks per decision, read-back, clock
changes tracking load, and every lock gone after SIGTERM. One JSON document on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from e2e.harness.agentprocs import REPO, free_port, http_get, start_engine, wait_for, write_instances
from e2e.simengine.loadgen import replay
from joulescale.profiles import load_profile
from joulescale.twin.traces import load_trace, scaled_window
from joulescale_agent.gpu.nvml import NvmlBackend
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile

PROFILE = "h100-sxm-llama-8b-tp1"
LIGHT_S, HEAVY_S = 8.0, 8.0

LOAD = """
import sys, time, torch
a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
torch.mm(a, a); torch.cuda.synchronize(); print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(20):
        torch.mm(a, a)
    torch.cuda.synchronize()
    time.sleep(0.002)
"""


def workload() -> list[Any]:
    trace = load_trace("azure-conv")
    light = scaled_window(trace, 0.3, LIGHT_S, start_s=600.0)
    heavy = [
        replace(r, arrival_s=r.arrival_s + LIGHT_S) for r in scaled_window(trace, 6.0, HEAVY_S, start_s=900.0)
    ]
    return [
        replace(r, prompt_tokens=min(r.prompt_tokens, 4096), output_tokens=min(r.output_tokens, 128))
        for r in [*light, *heavy]
    ]


def busy_clock(backend: NvmlBackend, uuid: str, seconds: float) -> int:
    load = subprocess.Popen([sys.executable, "-c", LOAD, str(seconds)], stdout=subprocess.PIPE)
    assert load.stdout is not None
    assert load.stdout.readline().strip() == b"ready"
    time.sleep(seconds * 0.5)
    value = backend.sm_clock_mhz(uuid)
    load.wait()
    return value


def main() -> None:
    backend = NvmlBackend()
    uuid = backend.devices()[0].uuid
    tmp = Path(tempfile.mkdtemp())
    report: dict[str, Any] = {"gpu": backend.devices()[0].name}
    report["busy_clock_before_mhz"] = busy_clock(backend, uuid, 3.0)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = {"prefill": free_port(), "decode": free_port()}
        SimGpuDir.create(
            tmp / "sim", specs_from_profile(load_profile(PROFILE), ["GPU-prefill", "GPU-decode"])
        )
        for role, port in ports.items():
            procs.append(start_engine(role, port, tmp / "sim", [f"GPU-{role}"], tmp / f"{role}.log", PROFILE))
        for role, port in ports.items():
            wait_for(lambda p=port: http_get(f"http://127.0.0.1:{p}/health")[0] == 200, 60, f"{role} engine")
        instances = tmp / "instances.json"
        write_instances(
            instances,
            [
                {
                    "namespace": "gpu-check",
                    "pod": "decode-0",
                    "role": "decode",
                    "engine": "vllm",
                    "metrics_url": f"http://127.0.0.1:{ports['decode']}/metrics",
                    "gpus": [uuid],
                    "policy": {
                        "policy": "joulescale",
                        "profile": PROFILE,
                        "slo": {"ttft_ms": 1000, "tpot_ms": 9, "percentile": 90},
                    },
                }
            ],
        )
        agent_port = free_port()
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                [str(REPO), str(REPO / "node_agent"), os.environ.get("PYTHONPATH", "")]
            ),
        )
        log = (tmp / "agent.log").open("ab")
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "joulescale_agent.main",
                "--backend",
                "nvml",
                "--state-file",
                str(tmp / "state.json"),
                "--instances",
                str(instances),
                "--host",
                "127.0.0.1",
                "--port",
                str(agent_port),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(agent)
        wait_for(lambda: http_get(f"http://127.0.0.1:{agent_port}/readyz")[0] == 200, 60, "agent ready")
        load = subprocess.Popen([sys.executable, "-c", LOAD, str(LIGHT_S + HEAVY_S + 6)])
        procs.append(load)
        samples: list[tuple[float, int]] = []

        async def run() -> list[Any]:
            stop = asyncio.Event()

            async def sample(start: float) -> None:
                while not stop.is_set():
                    samples.append((time.monotonic() - start, backend.sm_clock_mhz(uuid)))
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample(time.monotonic()))
            results = await replay(
                workload(), f"http://127.0.0.1:{ports['prefill']}", f"http://127.0.0.1:{ports['decode']}"
            )
            stop.set()
            await sampler
            return results

        results = asyncio.run(run())
        page = http_get(f"http://127.0.0.1:{agent_port}/metrics")[1]
        report["requests"] = len(results)
        report["clock_light_mean_mhz"] = statistics.fmean(c for t, c in samples if 1.0 <= t < LIGHT_S)
        report["clock_heavy_mean_mhz"] = statistics.fmean(
            c for t, c in samples if LIGHT_S + 1.0 <= t < LIGHT_S + HEAVY_S
        )
        report["distinct_clocks_seen_mhz"] = sorted({c for _t, c in samples})
        report["agent_metrics"] = {
            line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if line.startswith(
                (
                    "joulescale_clock_changes",
                    "joulescale_gpu_clock_readback",
                    "joulescale_failsafe",
                    "joulescale_decisions_total",
                    "joulescale_read_only",
                )
            )
        }
        load.wait()
        agent.send_signal(signal.SIGTERM)
        report["agent_exit_code"] = agent.wait(timeout=20)
        report["state_file_after"] = (
            (tmp / "state.json").read_text() if (tmp / "state.json").exists() else None
        )
        report["busy_clock_after_sigterm_mhz"] = busy_clock(backend, uuid, 3.0)
        report["agent_log_tail"] = (tmp / "agent.log").read_text().splitlines()[-15:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        backend.reset_sm_clock(uuid)
        backend.close()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
