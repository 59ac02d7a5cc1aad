"""A hostile tenant against a real agent process: the real kube-apiserver, a fake kubelet serving
PodResources over gRPC, and simulated GPUs. The attacker names the victim's GPU on its own pod
(annotation and env) and has its own service and owner chain; a squatter pod claims a service
without being anyone's child. Neither controls a GPU; the victim's pod keeps its clock, and the
agent's loop stays responsive while the kubelet hangs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.agent_tenants import create, engine_pod, gpu_node, owner_chain, service, set_running
from e2e.harness.agentprocs import REPO, agent_env, free_port, http_get, metric_value, start_engine, wait_for
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import Kubelet, pod_resources
from e2e.test_agent_discovery import install_crd
from joulescale.profiles import load_profile
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile
from joulescale_agent.gpu.simulated import SimulatedBackend

pytestmark = pytest.mark.integration

PROFILE = "h100-sxm-llama-8b-tp1"
NODE = "gpu-node-trust"
VICTIM_GPU, SPARE_GPU = "GPU-victim", "GPU-spare"
VICTIM_CLOCK, ATTACKER_CLOCK = 1005, 1500


@pytest.fixture
def kubelet() -> Iterator[Kubelet]:
    k = Kubelet()
    yield k
    k.stop()


def start_kube_agent(
    plane: ControlPlane, tmp: Path, sim_dir: Path, socket: Path, port: int
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "joulescale_agent.main",
        "--backend=simulated",
        f"--sim-dir={sim_dir}",
        f"--state-file={tmp / 'state' / 'locked.json'}",
        f"--node-name={NODE}",
        f"--kubeconfig={plane.kubeconfig}",
        f"--pod-resources-socket={socket}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    with (tmp / "agent.log").open("ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=agent_env(), stdout=out, stderr=subprocess.STDOUT)


def static_service(plane: ControlPlane, namespace: str, port: int, clock_mhz: int) -> dict[str, object]:
    svc = create(plane, service(namespace, port=port, policy="static"))
    plan = {"status": {"plan": {"decodeBaseClockMHz": clock_mhz}}}
    plane.kubectl(
        "-n", namespace, "patch", "energyawarellmservices", "chat", "--subresource=status",
        "--type=merge", "-p", json.dumps(plan),
    )  # fmt: skip
    return svc


def test_an_attacker_naming_the_victims_gpu_controls_nothing(
    apiserver: ControlPlane, kubelet: Kubelet, tmp_path: Path
) -> None:
    install_crd(apiserver)
    apiserver.wait_crd_established("energyawarellmservices.joulescale.io")
    gpu_node(apiserver, NODE)
    sim_dir = tmp_path / "gpus"
    SimGpuDir.create(sim_dir, specs_from_profile(load_profile(PROFILE), [VICTIM_GPU, SPARE_GPU]))
    gpus = SimulatedBackend(sim_dir)
    engine_port, agent_port = free_port(), free_port()
    procs = [start_engine("decode", engine_port, sim_dir, [VICTIM_GPU], tmp_path / "engine.log")]
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{engine_port}/health")[0] == 200, 20, "engine up")
        victim_ns, evil_ns = apiserver.create_namespace("victim"), apiserver.create_namespace("evil")
        for ns in (victim_ns, evil_ns):
            apiserver.kubectl("-n", ns, "create", "serviceaccount", "default", check=False)

        # The attacker comes first (the older pod) with everything it can write itself: its own
        # service and owner chain, the victim's GPU in its annotation and env, a metrics URL
        # and a profile of its choosing.
        evil_rs = owner_chain(apiserver, static_service(apiserver, evil_ns, engine_port, ATTACKER_CLOCK))
        attacker = engine_pod(
            evil_ns,
            "attacker",
            NODE,
            owned_by=evil_rs,
            annotations={
                "joulescale.io/gpus": VICTIM_GPU,
                "joulescale.io/metrics-url": f"http://127.0.0.1:{engine_port}/metrics",
                "joulescale.io/profile": PROFILE,
            },
            env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": VICTIM_GPU}],
        )
        # The squatter holds a GPU of its own (from the kubelet) and claims the attacker's
        # service by label, without being the child of any of its objects.
        squatter = engine_pod(evil_ns, "squatter", NODE)
        victim_rs = owner_chain(apiserver, static_service(apiserver, victim_ns, engine_port, VICTIM_CLOCK))
        victim = engine_pod(victim_ns, "victim", NODE, owned_by=victim_rs)
        for pod in (attacker, squatter, victim):
            apiserver.kubectl("apply", "-f", "-", input=json.dumps(pod))
            set_running(apiserver, pod["metadata"]["namespace"], pod["metadata"]["name"], "127.0.0.1")
        kubelet.answer = pod_resources(victim_ns, "victim", {"nvidia.com/gpu": [VICTIM_GPU]})
        kubelet.answer += pod_resources(evil_ns, "squatter", {"nvidia.com/gpu": [SPARE_GPU]})

        procs.append(start_kube_agent(apiserver, tmp_path, sim_dir, kubelet.socket, agent_port))

        def locks() -> list[int | None]:
            return [gpus.locked_mhz(VICTIM_GPU), gpus.locked_mhz(SPARE_GPU)]

        def metrics() -> str:
            return http_get(f"http://127.0.0.1:{agent_port}/metrics")[1]

        def refused(ns: str, pod: str, reason: str) -> bool:
            return (
                metric_value(metrics(), "joulescale_instances_refused", namespace=ns, pod=pod, reason=reason)
                == 1
            )

        wait_for(lambda: locks() == [VICTIM_CLOCK, None], 30, "the victim's clock locked")
        wait_for(lambda: refused(evil_ns, "attacker", "gpus-unknown"), 10, "the attacker refused")
        wait_for(lambda: refused(evil_ns, "squatter", "not-owned"), 10, "the squatter refused")
        assert metric_value(metrics(), "joulescale_engine_instances") == 1
        for _ in range(40):  # the clock holds: nothing flips it to the attacker's
            assert locks() == [VICTIM_CLOCK, None]
            time.sleep(0.05)

        squatter_uid = apiserver.kubectl(
            "-n", evil_ns, "get", "pod", "squatter", "-o", "jsonpath={.metadata.uid}"
        ).stdout

        def squatter_event() -> bool:
            out = apiserver.kubectl(
                "-n", evil_ns, "get", "events", "--field-selector=involvedObject.name=squatter", "-o", "json"
            ).stdout
            return any(
                e["reason"] == "JouleScaleNotControlled" and e["involvedObject"].get("uid") == squatter_uid
                for e in json.loads(out)["items"]
            )

        wait_for(squatter_event, 10, "a Warning Event on the squatter (this incarnation of it)")

        # A kubelet that hangs: the agent's loop keeps answering, and the victim keeps its clock.
        kubelet.delay_s = 5.0
        calls = kubelet.calls
        apiserver.kubectl("-n", victim_ns, "annotate", "pod", "victim", "touched=1")  # a recompute
        deadline = time.monotonic() + 4.0
        slowest_s = 0.0
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert http_get(f"http://127.0.0.1:{agent_port}/healthz", timeout_s=2.0)[0] == 200
            slowest_s = max(slowest_s, time.monotonic() - started)
            assert locks() == [VICTIM_CLOCK, None]
            time.sleep(0.05)
        assert kubelet.calls > calls, "the kubelet was not asked while it hung"
        assert slowest_s < 0.5, f"the agent's loop stalled {slowest_s:.2f} s on a hanging kubelet"
        assert procs[-1].poll() is None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
