"""Run the operator as a child process for tests and benchmarks, and know when it is live."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OperatorProcess:
    """`python -m joulescale_operator` against one kubeconfig, logging to a file."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *,
        resync_interval_s: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.resync_interval_s = resync_interval_s
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.liveness_port = 0

    def start(self, timeout_s: float = 60.0) -> OperatorProcess:
        self.liveness_port = free_port()
        argv = [
            sys.executable,
            "-m",
            "joulescale_operator",
            f"--kubeconfig={self.kubeconfig}",
            f"--resync-interval-seconds={self.resync_interval_s}",
            f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self._wait_live(timeout_s)
        return self

    def _wait_live(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                url = f"http://127.0.0.1:{self.liveness_port}/healthz"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the operator was not live within {timeout_s} s:\n{self.log_tail()}")

    def stop(self, grace_s: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


class Kubectl(Protocol):
    """What the helpers need from a control plane (the e2e harness's ControlPlane has it)."""

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]: ...


def service_manifest(name: str, namespace: str, **spec_changes: Any) -> dict[str, Any]:
    """A small valid EnergyAwareLLMService: prefill on H100 (TP 2), decode on A100 (TP 1)."""
    spec: dict[str, Any] = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": {"image": "vllm/vllm-openai:v0.11.0"},
        "prefill": {"replicas": 1, "tensorParallelSize": 2, "gpu": {"products": ["NVIDIA-H100-80GB-HBM3"]}},
        "decode": {"replicas": 2, "tensorParallelSize": 1, "gpu": {"products": ["NVIDIA-A100-SXM4-80GB"]}},
        "slo": {"ttftMs": 600, "tpotMs": 50},
    }
    spec.update(spec_changes)
    return {
        "apiVersion": "joulescale.io/v1alpha1",
        "kind": "EnergyAwareLLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def apply(plane: Kubectl, manifest: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
    return plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest), check=check)


def get(plane: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def pods_of(plane: Kubectl, namespace: str, service: str) -> list[dict[str, Any]]:
    """The pods of one service (every role), as API dicts."""
    listed = plane.kubectl(
        "get", "pods", "-n", namespace, "-l", f"joulescale.io/service={service}", "-o", "json"
    )
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


def mark_deployment_ready(plane: Kubectl, deployment: dict[str, Any]) -> None:
    """Write the status kube-controller-manager would once every pod is ready (the integration
    tier runs no controller-manager)."""
    replicas = deployment["spec"]["replicas"]
    status = {"observedGeneration": deployment["metadata"]["generation"], "replicas": replicas,
              "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
    meta = deployment["metadata"]
    plane.kubectl("patch", "deployment", meta["name"], "-n", meta["namespace"], "--subresource=status",
                  "--type=merge", "-p", json.dumps({"status": status}))


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    if obj is None:
        return None
    conditions = obj.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == type_), None)


def managed_resource_versions(plane: Kubectl, namespace: str) -> dict[str, str]:
    """kind/name -> resourceVersion of every service and every child the operator manages."""
    kinds = "deployments,services,serviceaccounts,roles,rolebindings,energyawarellmservices"
    items = json.loads(plane.kubectl("get", kinds, "-n", namespace, "-o", "json").stdout)["items"]
    return {
        f"{item['kind']}/{item['metadata']['name']}": item["metadata"]["resourceVersion"]
        for item in items
        if item["kind"] == "EnergyAwareLLMService"
        or item["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "joulescale-operator"
    }
