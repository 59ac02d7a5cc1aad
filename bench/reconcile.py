"""Reconcile latency and operator memory against a real kube-apiserver.

Starts its own control plane (e2e.harness) and the operator as a subprocess, creates 50
EnergyAwareLLMServices at once, and measures for each the time from its create request to
both of its Deployments existing (seen through a watch), then the operator's peak RSS
(VmHWM). One service is created first, unmeasured, to warm the apiserver and connections. Prints one JSON document: {"resources", "latency_s": {"p50", "p99"}, "peak_rss_mb"}.

Run: .venv/bin/python bench/reconcile.py [--resources 50]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, watch

from e2e.harness.controlplane import ControlPlane
from joulescale.api import GROUP, PLURAL, VERSION
from joulescale.api.crd import render_crd_yaml
from joulescale_operator.testing import OperatorProcess, service_manifest

WARMUP_SETTLE_S = 3.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of the process's resident set, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found")


class DeploymentWatch:
    """Records when each Deployment of a namespace is first seen (monotonic seconds)."""

    def __init__(self, apps: client.AppsV1Api, namespace: str) -> None:
        self.first_seen: dict[str, float] = {}
        self._apps = apps
        self._namespace = namespace
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        listed = apps.list_namespaced_deployment(namespace)
        assert listed.metadata is not None
        self._resource_version = listed.metadata.resource_version
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                self._apps.list_namespaced_deployment,
                self._namespace,
                resource_version=self._resource_version,
                timeout_seconds=600,
                deserialize=False,
            ):
                self.first_seen.setdefault(event["object"]["metadata"]["name"], time.monotonic())
        except Exception:
            return

    def stop(self) -> None:
        self._watch.stop()  # type: ignore[no-untyped-call]


def create_all(
    api_client: client.ApiClient, namespace: str, count: int, timeout_s: float = 120
) -> list[float]:
    """Create `count` services at once; return each one's seconds from create to both Deployments."""
    custom = client.CustomObjectsApi(api_client)
    seen = DeploymentWatch(client.AppsV1Api(api_client), namespace)
    sent: dict[str, float] = {}

    def create(index: int) -> None:
        name = f"svc-{index:03d}"
        sent[name] = time.monotonic()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, service_manifest(name, namespace)
        )

    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(create, range(count)))
    deadline = time.monotonic() + timeout_s
    while not all(f"{n}-prefill" in seen.first_seen and f"{n}-decode" in seen.first_seen for n in sent):
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(seen.first_seen)} Deployments within {timeout_s} s")
        time.sleep(0.05)
    seen.stop()
    return [max(seen.first_seen[f"{n}-prefill"], seen.first_seen[f"{n}-decode"]) - sent[n] for n in sent]


def run(resources: int) -> dict[str, Any]:
    with ControlPlane() as plane, tempfile.TemporaryDirectory(prefix="bench-reconcile-") as workdir:
        plane.kubectl("apply", "--server-side", "-f", "-", input=render_crd_yaml())
        plane.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}")
        api_client = plane.api_client()
        api_client.configuration.connection_pool_maxsize = resources
        api_client.rest_client = client.rest.RESTClientObject(api_client.configuration)
        with OperatorProcess(plane.kubeconfig, Path(workdir) / "operator.log") as operator:
            assert operator.process is not None
            # Warm-up, not measured: the apiserver publishes the new CRD's OpenAPI for a few
            # seconds after it is established, and the first requests open connections.
            create_all(api_client, plane.create_namespace("warmup"), 1)
            time.sleep(WARMUP_SETTLE_S)
            latencies = create_all(api_client, plane.create_namespace("bench"), resources)
            rss_mb = peak_rss_mb(operator.process.pid)
    return {
        "resources": resources,
        "latency_s": {
            "p50": round(percentile(latencies, 0.50), 3),
            "p99": round(percentile(latencies, 0.99), 3),
        },
        "peak_rss_mb": round(rss_mb, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(run(args.resources)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
