"""What runs in a service's kwok pods and on their nodes in production, as processes on loopback:
a simulated engine per engine pod, and a real node agent per GPU node that holds one.

A poll of the real apiserver lists the service's pods. A pod that is Running with a pod IP
(kwok hands out loopback addresses, ``controlplane.KWOK_POD_CIDR``) and not terminating gets:
- GPUs of its node, as many as its ``nvidia.com/gpu`` limit, the lowest free ones (as a device
  plugin hands them out); the node's fake kubelet then lists them for the pod (PodResources);
- a simulated engine (``python -m e2e.simengine``) serving at ``<pod IP>:<spec.engine.port>`` on
  those GPUs of the node's simulated GPU directory, with the profile of the node's GPU product
  and the role's TP size.
A pod that goes or terminates has its engine stopped (SIGTERM, then SIGKILL after a short grace,
as the kubelet does) and its GPUs freed, before any new pod is started: kwok reuses pod IPs.

The first pod on a node starts the node's processes (``nodeprocesses.py``): its simulated GPUs,
fake kubelet and agent, with Kubernetes discovery. The agent finds its pods, their service and
the base clocks of ``status.plan`` through the apiserver, and reaches each engine at
``http://<pod IP>:<port>/metrics``, exactly as in production. Prometheus scrapes every engine (labels namespace, service, role and pod, as the
chart's PodMonitor relabels them) and every agent (its series carry those labels themselves).
"""

from __future__ import annotations

import http.client
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.harness.agentprocs import http_get, start_engine
from e2e.harness.controlplane import ControlPlane
from e2e.harness.nodeprocesses import NodeProcesses, terminate
from e2e.harness.nodes import GPU_RESOURCE
from e2e.harness.prometheus import PrometheusServer, ScrapeTarget
from joulescale.api import GROUP, PLURAL, VERSION
from joulescale.profiles import shipped_catalog

ROLE_LABEL = "joulescale.io/role"
SERVICE_LABEL = "joulescale.io/service"
ENGINE_GRACE_S = 2.0
"""SIGTERM to SIGKILL for an engine whose pod went (a pod's grace period, shortened)."""


@dataclass(slots=True)
class PodEngine:
    """The engine process of one pod."""

    uid: str
    pod: str
    role: str
    node: str
    ip: str
    port: int
    gpus: list[str]
    process: subprocess.Popen[bytes]
    serving: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"


class PodEngines:
    """``with PodEngines(cluster, ns, "llama", prometheus, workdir) as engines:`` processes follow
    the pods until the block ends; ``engines.urls("decode")`` are the engines serving now."""

    def __init__(
        self,
        cluster: ControlPlane,
        namespace: str,
        service: str,
        prometheus: PrometheusServer,
        workdir: Path,
        agent_args: Sequence[str] = (),
        poll_s: float = 0.5,
    ) -> None:
        from kubernetes import client

        self._cluster = cluster
        self.namespace = namespace
        self.service = service
        self._prometheus = prometheus
        self._workdir = workdir
        self._agent_args = tuple(agent_args)
        self._poll_s = poll_s
        api = cluster.api_client()
        self._api: Any = api
        self._core: Any = client.CoreV1Api(api)
        self._custom: Any = client.CustomObjectsApi(api)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-engines", daemon=True)
        self.nodes: dict[str, NodeProcesses] = {}
        self.engines: dict[str, PodEngine] = {}
        self.failures: list[str] = []
        """Processes that exited while their pod or node still needed them, pods left without one."""
        self.poll_errors: list[str] = []
        """Polls that failed (the apiserver or a process start answered with an error); retried."""
        self.engines_started = 0
        self._dead_agents: set[str] = set()
        self._published: dict[str, list[ScrapeTarget]] = {}

    # -- what a test reads -------------------------------------------------------------------

    def urls(self, role: str) -> list[str]:
        """Base URLs of the role's engines that answer (a router's endpoints)."""
        with self._lock:
            return sorted(e.url for e in self.engines.values() if e.role == role and e.serving)

    def serving(self) -> dict[str, PodEngine]:
        """Pod name -> its engine, for the engines that answer."""
        with self._lock:
            return {e.pod: e for e in self.engines.values() if e.serving}

    def agent_page(self, node: str) -> str:
        """The agent's /metrics on ``node`` ("" while it does not answer)."""
        with self._lock:
            found = self.nodes.get(node)
        if found is None:
            return ""
        try:
            status, body = http_get(f"{found.agent_url}/metrics", timeout_s=2.0)
        except (OSError, http.client.HTTPException):
            return ""
        return body if status == 200 else ""

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow(self._pods())
            except Exception as error:  # the apiserver may blip; the next poll retries
                self.poll_errors.append(f"{type(error).__name__}: {error}")
            self._stop.wait(self._poll_s)

    def _pods(self) -> list[dict[str, Any]]:
        """The service's engine pods as API dicts (camelCase, as kubectl shows them)."""
        listed = self._core.list_namespaced_pod(self.namespace, label_selector=f"{SERVICE_LABEL}={self.service}")
        pods = [self._api.sanitize_for_serialization(p) for p in listed.items]
        return [p for p in pods if p["metadata"].get("labels", {}).get(ROLE_LABEL) in ("prefill", "decode")]

    def _follow(self, pods: list[dict[str, Any]]) -> None:
        live = {
            p["metadata"]["uid"]: p
            for p in pods
            if p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP")
            and p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
        }
        gone = [uid for uid in self.engines if uid not in live]
        for uid in gone:
            self._stop_engine(uid)
        new = [p for uid, p in live.items() if uid not in self.engines]
        for pod in new:
            self._start_engine(pod)
        self._check_processes()
        self._publish_targets()
        self._mark_serving()

    def _start_engine(self, pod: dict[str, Any]) -> None:
        meta, node_name, ip = pod["metadata"], pod["spec"]["nodeName"], pod["status"]["podIP"]
        node = self.nodes.get(node_name) or self._start_node(node_name)
        role = meta["labels"][ROLE_LABEL]
        spec = self._service_spec()
        tp = int(spec[role].get("tensorParallelSize", 1))
        profile = shipped_catalog().match(node.product, spec["model"]["name"], tp)
        if profile is None:
            self.failures.append(f"no profile for {node.product} TP{tp}: pod {meta['name']} gets no engine")
            return
        gpus = node.assign(meta["uid"], self.namespace, meta["name"], _gpu_limit(pod))
        if gpus is None:
            self.failures.append(f"node {node.name} has too few free GPUs for pod {meta['name']}")
            return
        port = int(spec.get("engine", {}).get("port", 8000))
        log = self._workdir / f"engine-{meta['name']}.log"
        process = start_engine(role, port, node.sim_dir, gpus, log, profile.name, "vllm", "--host", ip)
        with self._lock:
            self.engines[meta["uid"]] = PodEngine(meta["uid"], meta["name"], role, node.name, ip, port, gpus, process)
        self.engines_started += 1

    def _stop_engine(self, uid: str) -> None:
        with self._lock:
            engine = self.engines.pop(uid)
        terminate(engine.process, ENGINE_GRACE_S)
        self.nodes[engine.node].release(uid)

    def _start_node(self, name: str) -> NodeProcesses:
        node = self._api.sanitize_for_serialization(self._core.read_node(name))
        started = NodeProcesses.start(node, self._cluster.kubeconfig, self._workdir, self._agent_args)
        self.nodes[name] = started
        return started

    def _service_spec(self) -> dict[str, Any]:
        obj = self._custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.service)
        spec: dict[str, Any] = obj["spec"]
        return spec

    def _check_processes(self) -> None:
        for engine in list(self.engines.values()):
            if engine.process.poll() is not None:
                self.failures.append(f"engine of pod {engine.pod} exited with {engine.process.returncode}")
                self._stop_engine(engine.uid)
        for node in self.nodes.values():
            if node.agent.poll() is not None and node.name not in self._dead_agents:
                self._dead_agents.add(node.name)
                self.failures.append(f"agent {node.name} exited with {node.agent.returncode}")

    def _mark_serving(self) -> None:
        for engine in list(self.engines.values()):
            if not engine.serving:
                try:
                    status, _ = http_get(f"{engine.url}/health", timeout_s=0.5)
                except (OSError, http.client.HTTPException):  # not up yet, or busy starting
                    continue
                if status == 200:
                    with self._lock:
                        engine.serving = True

    def _publish_targets(self) -> None:
        """Every engine and agent as a scrape target; the files are rewritten on a change only."""
        with self._lock:
            engines = list(self.engines.values())
            agents = [node.agent_port for node in self.nodes.values()]
        targets = {
            "engines": [
                ScrapeTarget(f"{e.ip}:{e.port}", {"namespace": self.namespace, "service": self.service,
                                                 "role": e.role, "pod": e.pod})
                for e in engines
            ],
            "agents": [ScrapeTarget(f"127.0.0.1:{port}") for port in agents],
        }
        for job, listed in targets.items():
            if self._published.get(job) != listed:
                self._prometheus.set_targets(job, listed)
                self._published[job] = listed

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> PodEngines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for uid in list(self.engines):
            self._stop_engine(uid)
        for node in self.nodes.values():
            node.stop()

    def logs(self, lines: int = 15) -> str:
        """The tail of every process's log, for a failure's report."""
        parts = []
        for path in sorted(self._workdir.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


def _gpu_limit(pod: dict[str, Any]) -> int:
    limits = [c.get("resources", {}).get("limits", {}) for c in pod["spec"].get("containers", [])]
    return max(sum(int(limit.get(GPU_RESOURCE, 0)) for limit in limits), 1)
