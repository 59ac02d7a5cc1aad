"""Spec -> child manifests (pure): a Deployment and a Service per role, and the router.

The manifests hold only the fields the operator owns; server-side apply merges them with
what others own (an autoscaled role's replicas are the planner's once its Deployment exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from joulescale.api import EnergyAwareLLMServiceSpec, PlanStatus, RolloutSpec
from joulescale_operator.enginehook import DEFAULT_HOOK_SETTINGS, HookSettings, engine_hook
from joulescale_operator.engines import engine_launch, router_image, router_launch
from joulescale_operator.identity import ENGINE_ROLES, Role, ServiceIdentity
from joulescale_operator.pods import engine_pod_template, role_spec

ROUTER_CONTAINER = "router"
ANNOTATION_PREFIX = "joulescale.io"


@dataclass(frozen=True, slots=True)
class ChildRef:
    """Which object a manifest is: enough to apply, read or delete it."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> ChildRef:
        meta = manifest["metadata"]
        return cls(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])


def desired_replicas(spec: EnergyAwareLLMServiceSpec, role: Role, plan: PlanStatus | None) -> int:
    """The fixed count, or the planner's count clamped to the bounds (the minimum before a plan).
    An autoscaled role's count is applied only when its Deployment is created: after that the
    field is the planner's (planned_replicas.py) and the reconciler leaves it out."""
    config = role_spec(spec, role)
    if config.replicas is not None:
        return config.replicas
    assert config.autoscaling is not None
    planned = None
    if plan is not None:
        planned = plan.prefill_replicas if role == "prefill" else plan.decode_replicas
    if planned is None:
        return config.autoscaling.min_replicas
    return max(config.autoscaling.min_replicas, min(config.autoscaling.max_replicas, planned))


def policy_annotations(spec: EnergyAwareLLMServiceSpec) -> dict[str, str]:
    """The SLO and energy policy on the Deployment (not the pod template): visible to tools,
    and changing them restarts no pod; the agents read the live values from the service."""
    return {
        f"{ANNOTATION_PREFIX}/ttft-ms": str(spec.slo.ttft_ms),
        f"{ANNOTATION_PREFIX}/tpot-ms": str(spec.slo.tpot_ms),
        f"{ANNOTATION_PREFIX}/slo-percentile": str(spec.slo.percentile),
        f"{ANNOTATION_PREFIX}/energy-policy": spec.energy.policy,
    }


def rollout_strategy(rollout: RolloutSpec) -> dict[str, Any]:
    """A RollingUpdate that by default frees a pod's GPUs before its successor needs them."""
    return {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": rollout.max_surge, "maxUnavailable": rollout.max_unavailable},
    }


def engine_deployment(
    identity: ServiceIdentity,
    spec: EnergyAwareLLMServiceSpec,
    role: Role,
    plan: PlanStatus | None,
    hook: HookSettings = DEFAULT_HOOK_SETTINGS,
) -> dict[str, Any]:
    labels = identity.labels(role, spec.engine.name)
    launch = engine_launch(spec, role, identity)
    template = engine_pod_template(spec, role, launch, labels, engine_hook(spec, hook))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**identity.metadata(role, spec.engine.name), "annotations": policy_annotations(spec)},
        "spec": {
            "replicas": desired_replicas(spec, role, plan),
            "selector": {"matchLabels": identity.selector(role)},
            "strategy": rollout_strategy(role_spec(spec, role).rollout),
            "template": template,
        },
    }


def service(
    identity: ServiceIdentity, spec: EnergyAwareLLMServiceSpec, role: Role, port: int
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": identity.metadata(role, spec.engine.name),
        "spec": {
            "selector": identity.selector(role),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def router_deployment(identity: ServiceIdentity, spec: EnergyAwareLLMServiceSpec) -> dict[str, Any]:
    labels = identity.labels("router", spec.engine.name)
    command, args = router_launch(spec, identity)
    container: dict[str, Any] = {
        "name": ROUTER_CONTAINER,
        "image": router_image(spec),
        "ports": [{"name": "http", "containerPort": spec.router.port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
    }
    if command is not None:
        container["command"] = command
    if args:
        container["args"] = args
    resources = spec.router.resources.to_wire()
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {"containers": [container]}
    if spec.router.node_selector:
        pod_spec["nodeSelector"] = dict(spec.router.node_selector)
    if spec.router.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in spec.router.tolerations]
    if spec.engine.name == "sglang":
        pod_spec["serviceAccountName"] = identity.child_name("router")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": identity.metadata("router", spec.engine.name),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": identity.selector("router")},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def router_discovery_rbac(identity: ServiceIdentity, spec: EnergyAwareLLMServiceSpec) -> list[dict[str, Any]]:
    """SGLang's router watches pods by label: a ServiceAccount allowed to read pods."""
    meta = identity.metadata("router", spec.engine.name)
    name = meta["name"]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": identity.namespace}],
        },
    ]


def render_children(
    identity: ServiceIdentity,
    spec: EnergyAwareLLMServiceSpec,
    plan: PlanStatus | None = None,
    hook: HookSettings = DEFAULT_HOOK_SETTINGS,
) -> list[dict[str, Any]]:
    """Every child of a service, in apply order (Deployments first: they are what readiness waits on)."""
    children = [engine_deployment(identity, spec, role, plan, hook) for role in ENGINE_ROLES]
    children += [service(identity, spec, role, spec.engine.port) for role in ENGINE_ROLES]
    if spec.router.enabled:
        if spec.engine.name == "sglang":
            children += router_discovery_rbac(identity, spec)
        children += [router_deployment(identity, spec), service(identity, spec, "router", spec.router.port)]
    return children
