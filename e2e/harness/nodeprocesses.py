"""What a GPU node of the local cluster runs besides its pods, as processes on loopback: its
simulated GPUs, a fake kubelet's PodResources socket and the node agent.

``NodeProcesses.start`` reads the node's GPU product and count from its labels (as GPU Feature
Discovery writes them), creates a simulated GPU directory with the clocks, settle time and idle
power of that product, and starts the agent CLI on it with Kubernetes discovery (``--node-name``,
the cluster's kubeconfig, the fake kubelet's socket), as the chart's DaemonSet runs it on a real
node. GPUs are handed to pods as a device plugin would (``assign``: the lowest free ones), and
the fake kubelet lists each pod's GPUs from then on.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.harness.agentprocs import free_port, start_agent
from e2e.harness.kubelet import Kubelet, pod_resources
from e2e.harness.nodes import GPU_RESOURCE
from joulescale.profiles import shipped_catalog
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"


@dataclass(slots=True)
class NodeProcesses:
    """One GPU node: its simulated GPUs, its fake kubelet and its agent."""

    name: str
    product: str
    sim_dir: Path
    gpus: list[str]
    kubelet: Kubelet
    agent: subprocess.Popen[bytes]
    agent_port: int
    held: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)
    """pod uid -> (namespace, name, GPU UUIDs): what the kubelet lists."""

    @classmethod
    def start(cls, node: dict[str, Any], kubeconfig: Path, workdir: Path, agent_args: Sequence[str] = ()) -> NodeProcesses:
        """``node``: the Node object (an API dict)."""
        name, labels = node["metadata"]["name"], node["metadata"]["labels"]
        product, count = labels[GPU_PRODUCT_LABEL], int(labels.get(GPU_COUNT_LABEL, "8"))
        profile = next(p for p in shipped_catalog().profiles if p.gpu_product == product)
        sim_dir = workdir / "nodes" / name / "gpus"
        gpus = [f"GPU-{name}-{i}" for i in range(count)]
        SimGpuDir.create(sim_dir, specs_from_profile(profile, gpus))
        kubelet = Kubelet()
        port = free_port()
        agent = start_agent(
            sim_dir, sim_dir.parent / "locked-gpus.json", None, port, workdir / f"agent-{name}.log",
            f"--node-name={name}", f"--kubeconfig={kubeconfig}", f"--pod-resources-socket={kubelet.socket}",
            *agent_args,
        )
        return cls(name, product, sim_dir, gpus, kubelet, agent, port)

    @property
    def agent_url(self) -> str:
        return f"http://127.0.0.1:{self.agent_port}"

    def assign(self, uid: str, namespace: str, pod: str, wanted: int) -> list[str] | None:
        """The pod's GPUs, the lowest free ones (None: fewer are free); the kubelet lists them."""
        taken = {gpu for _, _, gpus in self.held.values() for gpu in gpus}
        free = [gpu for gpu in self.gpus if gpu not in taken]
        if len(free) < wanted:
            return None
        self.held[uid] = (namespace, pod, free[:wanted])
        self._publish()
        return free[:wanted]

    def release(self, uid: str) -> None:
        self.held.pop(uid, None)
        self._publish()

    def _publish(self) -> None:
        self.kubelet.answer = b"".join(
            pod_resources(namespace, name, {GPU_RESOURCE: gpus}) for namespace, name, gpus in self.held.values()
        )

    def stop(self) -> None:
        terminate(self.agent, 10.0)
        self.kubelet.stop()


def terminate(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``, as the kubelet stops a container."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
