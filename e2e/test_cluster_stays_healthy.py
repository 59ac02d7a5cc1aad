"""The local cluster stays healthy: kwok nodes keep their leases, so nothing decays to NotReady.

Without node leases the node lifecycle controller's grace period lapsed after about 50 s, the
nodes flapped NotReady and every pod on them was marked not ready. The test watches the shared
session cluster until it has been up for three minutes, sampling every few seconds, and also
reads the node controller's NodeNotReady events, which catch a flap shorter than a sample.
It runs after the other e2e tests (marker ``soak``), so it only waits for what is left.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from e2e.harness.controlplane import ControlPlane
from e2e.harness.workloads import gpu_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

CLUSTER_AGE_S = 180.0
"""Several lease and heartbeat periods: the decay used to show after about 50 s."""
MIN_WATCH_S = 15.0
"""Watch at least this long even when the session's cluster is already old enough."""
SAMPLE_PERIOD_S = 3.0


def _parse_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _ready(obj: dict[str, Any]) -> str | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == "Ready":
            return str(cond["status"])
    return None


def _unhealthy(cluster: ControlPlane) -> list[str]:
    """Nodes not Ready, and running pods placed on a node that are not Ready, in one read."""
    listed = json.loads(cluster.kubectl("get", "nodes,pods", "-A", "-o", "json").stdout)["items"]
    problems = []
    for item in listed:
        name = item["metadata"]["name"]
        if item["kind"] == "Node" and _ready(item) != "True":
            problems.append(f"node {name} Ready={_ready(item)}")
        placed = item["kind"] == "Pod" and item["spec"].get("nodeName")
        running = item.get("status", {}).get("phase") == "Running"
        if placed and running and "deletionTimestamp" not in item["metadata"] and _ready(item) != "True":
            problems.append(f"pod {item['metadata']['namespace']}/{name} Ready={_ready(item)}")
    return problems


def test_nodes_and_pods_stay_ready_for_three_minutes(cluster: ControlPlane) -> None:
    namespace = cluster.create_namespace("soak")
    cluster.kubectl("apply", "-f", "-", input=gpu_deployment("engine", namespace, replicas=3, gpus_per_pod=1))
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "deployment/engine", "--timeout=60s"
    )
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    born = min(_parse_time(node["metadata"]["creationTimestamp"]) for node in nodes)

    watch_until = time.monotonic() + MIN_WATCH_S
    samples = 0
    while True:
        problems = _unhealthy(cluster)
        samples += 1
        assert not problems, f"after {samples} samples: {problems}"
        age_s = (datetime.now(UTC) - born).total_seconds()
        if age_s >= CLUSTER_AGE_S and time.monotonic() >= watch_until:
            break
        time.sleep(SAMPLE_PERIOD_S)

    flaps = json.loads(
        cluster.kubectl("get", "events", "-A", "--field-selector=reason=NodeNotReady", "-o", "json").stdout
    )["items"]
    assert not flaps, [f"{e['involvedObject']['name']}: {e['message']}" for e in flaps]
    leases = json.loads(cluster.kubectl("get", "leases", "-n", "kube-node-lease", "-o", "json").stdout)
    assert {lease["metadata"]["name"] for lease in leases["items"]} >= {n["metadata"]["name"] for n in nodes}
    for lease in leases["items"]:
        renew_age_s = (datetime.now(UTC) - datetime.fromisoformat(lease["spec"]["renewTime"])).total_seconds()
        assert renew_age_s < lease["spec"]["leaseDurationSeconds"], lease["metadata"]["name"]
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
