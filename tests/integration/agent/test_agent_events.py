"""The agent's one event writer against the real apiserver: Warning Events on pods, counted
when repeated, naming the pod's incarnation (uid), with messages the apiserver accepts."""

from __future__ import annotations

import json
import time

import pytest

from e2e.harness.controlplane import ControlPlane
from joulescale.control.policy import Slo
from joulescale_agent.control.instance import EngineInstance, InstancePolicy
from joulescale_agent.control.supervisor import Supervisor
from joulescale_agent.events import CLOCK_POLICY_ERROR, NOT_CONTROLLED, PodRef
from joulescale_agent.kube_client import api_client
from joulescale_agent.kube_events import MAX_MESSAGE_BYTES, KubeEventRecorder

pytestmark = pytest.mark.integration


def _events(plane: ControlPlane, namespace: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while True:
        out = plane.kubectl("get", "events", "-n", namespace, "-o", "json")
        events = list(json.loads(out.stdout)["items"])
        if len(events) >= count:
            return events
        assert time.monotonic() < deadline, events
        time.sleep(0.1)


async def test_an_unbuildable_policy_becomes_one_warning_event_on_the_pod(apiserver: ControlPlane) -> None:
    apiserver.kubectl("create", "namespace", "tenant-a")
    recorder = KubeEventRecorder(api_client(apiserver.kubeconfig), "gpu-node-1")

    def refuse(instance: EngineInstance, policy: InstancePolicy) -> object:
        raise ValueError("no supported clock in [3000, 5000] MHz")

    supervisor = Supervisor(refuse, events=recorder)  # type: ignore[arg-type]
    instance = EngineInstance(
        "tenant-a", "decode-0", "decode", "vllm", "http://127.0.0.1:1/metrics", ("GPU-a",), uid="uid-decode-0"
    )
    policy = InstancePolicy("static", Slo(500, 50), "h100-sxm-llama-8b-tp1", base_clock_mhz=1005)
    await supervisor.reconcile({instance.key: (instance, policy)})
    await supervisor.reconcile({instance.key: (instance, policy)})  # unchanged: no second event
    recorder.warn(instance.pod_ref, CLOCK_POLICY_ERROR, "again")
    recorder.warn(instance.pod_ref, CLOCK_POLICY_ERROR, "again")
    recorder.close()

    events = _events(apiserver, "tenant-a", 2)
    by_message = {str(e["message"]): e for e in events}
    first = by_message["GPU clocks left at default: ValueError: no supported clock in [3000, 5000] MHz"]
    assert first["type"] == "Warning"
    assert first["reason"] == "ClockPolicyError"
    assert first["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "decode-0",
        "namespace": "tenant-a",
        "uid": "uid-decode-0",
    }
    assert first["reportingComponent"] == "joulescale.io/joulescale-agent"
    assert first["reportingInstance"] == "gpu-node-1"
    assert first["count"] == 1
    assert by_message["again"]["count"] == 2, "a repeated event is counted, not duplicated"
    assert len(events) == 2


def test_one_writer_keeps_pods_and_incarnations_apart_and_caps_messages_in_bytes(
    apiserver: ControlPlane,
) -> None:
    apiserver.kubectl("create", "namespace", "tenant-b")
    recorder = KubeEventRecorder(api_client(apiserver.kubeconfig), "gpu-node-1")
    huge = "é" * 5000 + "\ud800"  # 10 kB of UTF-8 and a lone surrogate JSON cannot carry
    recorder.warn(PodRef("tenant-b", "p", "uid-1"), NOT_CONTROLLED, "same words")
    recorder.warn(PodRef("tenant-b", "p", "uid-2"), NOT_CONTROLLED, "same words")  # pod recreated
    recorder.warn(PodRef("tenant-b", "q"), NOT_CONTROLLED, huge)
    recorder.close()

    events = _events(apiserver, "tenant-b", 3)
    assert len(events) == 3
    by_uid = {e["involvedObject"].get("uid"): e for e in events}  # type: ignore[attr-defined]
    assert by_uid["uid-1"]["count"] == by_uid["uid-2"]["count"] == 1, "a new incarnation gets its own event"
    capped = str(by_uid[None]["message"])
    assert by_uid[None]["reason"] == "JouleScaleNotControlled"
    assert len(capped.encode()) <= MAX_MESSAGE_BYTES
    assert capped == "é" * (MAX_MESSAGE_BYTES // 2)
