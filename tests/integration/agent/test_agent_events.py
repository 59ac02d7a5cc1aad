"""Warning Events on a pod whose clocks the agent cannot control, against the real apiserver."""

from __future__ import annotations

import json
import time

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale.control.policy import Slo
from joulescale_agent.control.instance import EngineInstance, InstancePolicy
from joulescale_agent.control.supervisor import Supervisor
from joulescale_agent.kube_events import KubeEventRecorder, api_client

pytestmark = pytest.mark.integration


def _events(plane: ControlPlane, namespace: str) -> list[dict[str, object]]:
    out = plane.kubectl("get", "events", "-n", namespace, "-o", "json")
    return list(json.loads(out.stdout)["items"])


async def test_an_unbuildable_policy_becomes_one_warning_event_on_the_pod(apiserver: ControlPlane) -> None:
    apiserver.kubectl("create", "namespace", "tenant-a")
    recorder = KubeEventRecorder(api_client(apiserver.kubeconfig), "gpu-node-1")

    def refuse(instance: EngineInstance, policy: InstancePolicy) -> object:
        raise ValueError("no supported clock in [3000, 5000] MHz")

    supervisor = Supervisor(refuse, events=recorder)  # type: ignore[arg-type]
    instance = EngineInstance(
        "tenant-a", "decode-0", "decode", "vllm", "http://127.0.0.1:1/metrics", ("GPU-a",)
    )
    policy = InstancePolicy("static", Slo(500, 50), "h100-sxm-llama-8b-tp1", base_clock_mhz=1005)
    await supervisor.reconcile({instance.key: (instance, policy)})
    await supervisor.reconcile({instance.key: (instance, policy)})  # unchanged: no second event
    recorder.warn(instance, "ClockPolicyError", "again")
    recorder.warn(instance, "ClockPolicyError", "again")
    recorder.close()

    deadline = time.monotonic() + 10
    while len(events := _events(apiserver, "tenant-a")) < 2:
        assert time.monotonic() < deadline, events
        time.sleep(0.1)
    by_message = {str(e["message"]): e for e in events}
    first = by_message["GPU clocks left at default: ValueError: no supported clock in [3000, 5000] MHz"]
    assert first["type"] == "Warning"
    assert first["reason"] == "ClockPolicyError"
    assert first["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "decode-0",
        "namespace": "tenant-a",
    }
    assert first["count"] == 1
    assert by_message["again"]["count"] == 2, "a repeated event is counted, not duplicated"
    assert len(events) == 2
