"""The chart's values.schema.json, judged by the real helm client: a bad value fails `helm install`
and `helm template` with a message naming the value; good values render objects that the real
kube-apiserver accepts, with the scheduling and registry fields where they belong."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from tests.integration.operator.test_chart_privileges import CHART, RELEASE_NAMESPACE, component, render

pytestmark = pytest.mark.integration

# (--set argument, what the error must name): wrong types, out-of-range numbers, misspelt keys,
# values that would render an invalid or dangerous manifest.
BAD_VALUES = [
    ("agent.scrapeHz=fast", "'/agent/scrapeHz': 'fast' does not match"),
    ("agent.scrapeHz=0.0", "'/agent/scrapeHz'"),
    ("agent.scrapeHz=0.05", "'/agent/scrapeHz'"),  # a decimal string, as --set passes it
    ("agent.scrapeHz=1000.5", "'/agent/scrapeHz'"),
    ("operator.resyncIntervalSeconds=soon", "'/operator/resyncIntervalSeconds'"),
    ("agent.scrapeHz=0", "'/agent/scrapeHz'"),
    ("agent.scrapeHz=5000", "'/agent/scrapeHz'"),
    ("agent.metricsPort=99999", "'/agent/metricsPort'"),
    ("agent.metricsPort=http", "'/agent/metricsPort'"),
    ("agent.scrapeHZ=5", "additional properties 'scrapeHZ' not allowed"),
    ("agents.enabled=false", "additional properties 'agents' not allowed"),
    ("image.pullPolicy=Sometimes", "'/image/pullPolicy'"),
    ("image.tag=1", "'/image/tag': got number, want string"),
    ("image.agentRepository=ghcr.io/x/agent:1.0", "'/image/agentRepository'"),
    ("image.operatorRepository=", "'/image/operatorRepository'"),
    ("agent.runtimeClassName=Bad_Name", "'/agent/runtimeClassName'"),
    ("operator.priorityClassName=High Priority", "'/operator/priorityClassName'"),
    ("operator.imagePullSecrets={regcred}", "'/operator/imagePullSecrets/0': got string, want object"),
    ("agent.imagePullSecrets[0].nam=regcred", "'/agent/imagePullSecrets/0'"),
    ("operator.watchNamespaces={Team-A}", "'/operator/watchNamespaces/0'"),
    ("operator.watchNamespaces={team-*}", "'/operator/watchNamespaces/0'"),
    ("operator.maxWorkers=0", "'/operator/maxWorkers'"),
    ("operator.resyncIntervalSeconds=0", "'/operator/resyncIntervalSeconds'"),
    ("agent.tolerations[0].operator=Maybe", "'/agent/tolerations/0/operator'"),
    ("agent.nodeSelector.gpu=true", "'/agent/nodeSelector/gpu': got boolean, want string"),
    ("agent.resources.limits.memory=lots", "'/agent/resources/limits/memory'"),
    ("operator.resources.request.cpu=1", "additional properties 'request' not allowed"),
    ("agent.stateHostPath=var/lib/joulescale", "'/agent/stateHostPath'"),
    ("agent.terminationGracePeriodSeconds=-1", "'/agent/terminationGracePeriodSeconds'"),
    ("agent.nvidiaDriverCapabilities=utility;rm", "'/agent/nvidiaDriverCapabilities'"),
    ("agent.networkPolicy.from[0].everyone=true", "additional properties 'everyone' not allowed"),
    ("namespace.podSecurity.enforce=lax", "'/namespace/podSecurity/enforce'"),
    ("metrics.serviceMonitor.intervalSeconds=15s", "'/metrics/serviceMonitor/intervalSeconds'"),
]


def test_every_bad_value_fails_helm_template_naming_the_value(crd_plane: ControlPlane) -> None:
    for value, named in BAD_VALUES:
        out = crd_plane.helm("template", "js", str(CHART), "--set", value, check=False)
        assert out.returncode != 0, f"{value} rendered:\n{out.stdout[:400]}"
        assert "values don't meet the specifications of the schema" in out.stderr, value
        assert named in out.stderr, f"{value}: {out.stderr}"


def test_a_bad_value_fails_helm_install_before_anything_is_created(crd_plane: ControlPlane) -> None:
    namespace = crd_plane.create_namespace("badvalues")
    out = crd_plane.helm(
        "install", "js", str(CHART), "-n", namespace, "--set", "agent.scrapeHz=fast", check=False
    )
    assert out.returncode != 0
    assert "'/agent/scrapeHz'" in out.stderr
    assert crd_plane.helm("status", "js", "-n", namespace, check=False).returncode != 0
    listed = crd_plane.kubectl("get", "deployments,daemonsets,serviceaccounts", "-n", namespace, "-o", "name")
    assert "js-" not in listed.stdout


def _pod(documents: list[dict[str, Any]], kind: str, who: str) -> dict[str, Any]:
    spec: dict[str, Any] = component(documents, kind, who)["spec"]["template"]["spec"]
    return spec


def test_scheduling_and_registry_values_reach_both_pods_and_the_apiserver_accepts_them(
    crd_plane: ControlPlane,
) -> None:
    defaults = render(crd_plane)
    for kind, who in (("Deployment", "operator"), ("DaemonSet", "agent")):
        pod = _pod(defaults, kind, who)
        assert "priorityClassName" not in pod, who
        assert "imagePullSecrets" not in pod, who
    assert "runtimeClassName" not in _pod(defaults, "Deployment", "operator")
    assert _pod(defaults, "DaemonSet", "agent")["runtimeClassName"] == "nvidia"

    documents = render(
        crd_plane,
        "operator.priorityClassName=joulescale-control",
        "operator.runtimeClassName=runc",
        "operator.imagePullSecrets[0].name=regcred",
        "agent.priorityClassName=system-node-critical",
        "agent.runtimeClassName=nvidia-cdi",
        "agent.imagePullSecrets[0].name=regcred",
        "agent.imagePullSecrets[1].name=mirror",
        "agent.scrapeHz=2.5",
        "operator.resyncIntervalSeconds=7.5",
    )
    operator, agent = _pod(documents, "Deployment", "operator"), _pod(documents, "DaemonSet", "agent")
    assert operator["priorityClassName"] == "joulescale-control"
    assert operator["runtimeClassName"] == "runc"
    assert operator["imagePullSecrets"] == [{"name": "regcred"}]
    assert agent["priorityClassName"] == "system-node-critical"
    assert agent["runtimeClassName"] == "nvidia-cdi"
    assert agent["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert "--scrape-hz=2.5" in agent["containers"][0]["args"]
    assert "--resync-interval-seconds=7.5" in operator["containers"][0]["args"]

    crd_plane.kubectl("create", "namespace", RELEASE_NAMESPACE, check=False)
    crd_plane.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        RELEASE_NAMESPACE,
        "-f",
        "-",
        input=yaml.safe_dump_all([d for d in documents if d["kind"] in {"Deployment", "DaemonSet"}]),
    )
