"""A real Kubernetes control plane on 127.0.0.1, started and stopped from Python.

Two shapes: ``apiserver`` (etcd + kube-apiserver, for operator integration tests) and
``cluster`` (adds kube-controller-manager, kube-scheduler and kwok with fake GPU nodes, so
that Deployments get pods, the scheduler places them by affinity and garbage collection runs).
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from e2e.harness import pki, provision
from e2e.harness.nodes import FakeGpuNode, load_nodes
from e2e.harness.processes import HarnessError, ManagedProcess, free_port

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
KWOK_POD_CIDR = "127.244.0.1/16"
"""Where kwok takes its pods' IPs from: loopback addresses (Linux routes all of 127.0.0.0/8 to
the loopback interface), so a process on this host can serve at a pod's IP and port, as its
engine container would, and the node agent reaches it through the pod IP exactly as in
production (e2e/harness/podengines.py). The apiserver accepts loopback pod IPs; it refuses them
in EndpointSlices, so the local cluster's Services have no endpoints (no test reads them)."""
NODE_LEASE_DURATION_S = 40
"""The kubelet's default; kwok renews each node's Lease every quarter of it."""


class ControlPlane:
    """Owns every process and file of one local control plane; ``stop`` removes all of it."""

    def __init__(
        self,
        *,
        with_cluster: bool = False,
        nodes: Sequence[FakeGpuNode] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.with_cluster = with_cluster
        self.created_namespaces: list[str] = []
        """Namespaces made by create_namespace, in order (tests clean up their own)."""
        self.nodes = list(nodes) if nodes is not None else (load_nodes() if with_cluster else [])
        self._owns_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="joulescale-cp-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.workdir / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.binaries: dict[str, Path] = {}
        self.server = ""
        self.processes: list[ManagedProcess] = []
        self._pki: pki.Pki | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        names = ["etcd", "kube-apiserver", "kubectl", "helm"]
        if self.with_cluster:
            names += ["kube-controller-manager", "kube-scheduler", "kwok"]
        self.binaries = provision.ensure_binaries(names)
        try:
            self._pki = pki.generate(self.workdir / "pki")
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            if self.with_cluster:
                self._start_cluster_components()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- components --------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.log_dir)
        proc.start()
        self.processes.append(proc)
        return proc

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries["etcd"]),
                "--name=joulescale",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=joulescale=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        etcd.wait_until(lambda: _http_ok(f"{url}/health"), timeout_s=30)
        return url

    def _start_apiserver(self, etcd_url: str) -> None:
        assert self._pki is not None
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        p = self._pki
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={p.serving_cert}",
                f"--tls-private-key-file={p.serving_key}",
                f"--client-ca-file={p.ca_cert}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={p.service_account_pub}",
                f"--service-account-signing-key-file={p.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
        )
        self._write_kubeconfig()
        apiserver.wait_until(lambda: self._get("/readyz") == "ok", timeout_s=90)

    def _start_cluster_components(self) -> None:
        assert self._pki is not None
        kubeconfig = str(self.kubeconfig)
        delegated = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ]
        cm_port, sched_port = free_port(), free_port()
        controller_manager = self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries["kube-controller-manager"]),
                *delegated,
                f"--secure-port={cm_port}",
                f"--cert-dir={self.workdir / 'cm-certs'}",
                f"--service-account-private-key-file={self._pki.service_account_key}",
                f"--root-ca-file={self._pki.ca_cert}",
                "--use-service-account-credentials=false",
                f"--cluster-cidr={POD_CIDR}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--concurrent-gc-syncs=20",
                "--v=1",
            ],
        )
        scheduler = self._spawn(
            "kube-scheduler",
            [
                str(self.binaries["kube-scheduler"]),
                *delegated,
                f"--secure-port={sched_port}",
                f"--cert-dir={self.workdir / 'sched-certs'}",
                "--v=1",
            ],
        )
        kwok = self._spawn(
            "kwok",
            [
                str(self.binaries["kwok"]),
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--cidr={KWOK_POD_CIDR}",
                "--node-ip=10.244.0.1",
                f"--server-address=127.0.0.1:{free_port()}",
                # Renew a Lease per node in kube-node-lease, as a kubelet does. Without it kwok only
                # rewrites node conditions every 20-45 s (plus its own lag on a busy machine), so the
                # node lifecycle controller's grace period (50 s) lapses, the nodes flap NotReady and
                # every pod on them is marked not ready.
                f"--node-lease-duration-seconds={NODE_LEASE_DURATION_S}",
            ],
        )
        controller_manager.wait_until(lambda: _https_ok(cm_port), timeout_s=60)
        scheduler.wait_until(lambda: _https_ok(sched_port), timeout_s=60)
        if self.nodes:
            self.apply_objects([node.manifest() for node in self.nodes])
            kwok.wait_until(self._nodes_ready, timeout_s=60)

    def _nodes_ready(self) -> bool:
        out = self.kubectl("get", "nodes", "-o", "json", check=False)
        if out.returncode != 0:
            return False
        items = json.loads(out.stdout)["items"]
        ready = {
            item["metadata"]["name"]
            for item in items
            for cond in item.get("status", {}).get("conditions", [])
            if cond["type"] == "Ready" and cond["status"] == "True"
        }
        return all(node.name in ready for node in self.nodes)

    # -- clients -----------------------------------------------------------------------------

    def _write_kubeconfig(self) -> None:
        assert self._pki is not None

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "joulescale-local",
                    "cluster": {"server": self.server, "certificate-authority-data": b64(self._pki.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64(self._pki.admin_cert),
                        "client-key-data": b64(self._pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": "joulescale-local", "context": {"cluster": "joulescale-local", "user": "admin"}}
            ],
            "current-context": "joulescale-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _ssl_context(self) -> ssl.SSLContext:
        assert self._pki is not None
        context = ssl.create_default_context(cafile=str(self._pki.ca_cert))
        context.load_cert_chain(str(self._pki.admin_cert), str(self._pki.admin_key))
        return context

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(self.server + path, context=self._ssl_context(), timeout=5) as resp:
            body: bytes = resp.read()
            return body.decode()

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout_s: float = 120,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the harness's kubectl as the admin, or with another ``kubeconfig``."""
        config_path = kubeconfig or self.kubeconfig
        return self._run(
            [str(self.binaries["kubectl"]), f"--kubeconfig={config_path}", *args], input, check, timeout_s
        )

    def wait_crd_established(self, name: str, timeout_s: float = 60.0) -> None:
        """Poll until the CRD ``name`` reports Established. ``kubectl wait`` errors out instead of
        waiting when it reads the CRD before the apiserver has written any status condition
        ("status.conditions accessor error"), a race right after the CRD is created."""
        deadline = time.monotonic() + timeout_s
        query = '{.status.conditions[?(@.type=="Established")].status}'
        while True:
            got = self.kubectl("get", "crd", name, "-o", f"jsonpath={query}", check=False)
            if got.returncode == 0 and got.stdout.strip() == "True":
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"CRD {name} not Established within {timeout_s:g} s: {got.stderr.strip()}")
            time.sleep(0.2)

    def token_kubeconfig(self, token: str, name: str = "token-user") -> Path:
        """A kubeconfig that authenticates with a bearer token only (no admin certificate)."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"] = [{"name": name, "user": {"token": token}}]
        config["contexts"][0]["context"]["user"] = name
        path = self.workdir / f"kubeconfig-{name}"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def helm(
        self, *args: str, check: bool = True, timeout_s: float = 300
    ) -> subprocess.CompletedProcess[str]:
        helm_home = self.workdir / "helm"
        argv = [
            str(self.binaries["helm"]),
            f"--kubeconfig={self.kubeconfig}",
            f"--repository-config={helm_home / 'repositories.yaml'}",
            f"--repository-cache={helm_home / 'cache'}",
            *args,
        ]
        return self._run(argv, None, check, timeout_s)

    @staticmethod
    def _run(
        argv: list[str], input: str | None, check: bool, timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout_s)
        if check and proc.returncode != 0:
            raise HarnessError(
                f"`{' '.join(argv[:1] + argv[2:])}` failed ({proc.returncode}):\n{proc.stderr}"
            )
        return proc

    def apply_objects(self, objects: Sequence[dict[str, Any]]) -> None:
        self.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(objects))

    def create_namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        self.created_namespaces.append(name)
        return name

    def ensure_nvidia_runtime_class(self) -> None:
        """The RuntimeClass ``nvidia`` that the agent's pods name (the GPU Operator creates it on
        a real cluster); the handler is never run here."""
        manifest = (
            '{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", '
            '"metadata": {"name": "nvidia"}, "handler": "nvidia"}'
        )
        self.kubectl("apply", "-f", "-", input=manifest)

    def delete_namespaces(self, names: list[str], timeout_s: int = 60) -> None:
        """Delete namespaces and wait until they are gone (their pods' GPUs are then free)."""
        if names:
            self.kubectl(
                "delete", "namespace", *names, "--ignore-not-found", f"--timeout={timeout_s}s", check=False
            )

    def api_client(self) -> ApiClient:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        return client.ApiClient(configuration)

    def wait_for(self, predicate: Any, timeout_s: float = 60, interval_s: float = 0.2) -> Any:
        """Poll until ``predicate()`` returns something truthy, and return it."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout_s} s")
            time.sleep(interval_s)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _https_ok(port: int) -> bool:
    """The component's own /healthz answers; its cert is self-signed, so we skip verification."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
