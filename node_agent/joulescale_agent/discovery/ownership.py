"""Did the operator create this pod? The owner chain, checked against the apiserver (pure).

A pod's labels are the tenant's to write; its owner references are not proof either, since
anyone who can create a pod can write any ``ownerReferences``. So the chain is followed through
objects read from the apiserver, and every hop must name the next object by UID:

    pod --controller--> ReplicaSet --controller--> Deployment --controller--> EnergyAwareLLMService

and the service at the end must be the one the pod's ``joulescale.io/service`` label names, the
Deployment's role label the pod's role. What remains: whoever may write ReplicaSets and
Deployments in a namespace can build such a chain to a service of that namespace. That is the
tenant of the namespace steering their own service's GPUs (which come from the kubelet, never
from the chain), never another tenant's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from joulescale.api import API_VERSION, KIND

ROLE_LABEL = "joulescale.io/role"
SERVICE_LABEL = "joulescale.io/service"

Objects = Mapping[str, Mapping[str, Any]]
"""API dicts by ``namespace/name``."""


class NotOwned(Exception):
    """The chain is broken; the message says where (it becomes the refusal's detail)."""


def _controller(obj: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    refs = _meta(obj).get("ownerReferences")
    if not isinstance(refs, list):
        raise NotOwned(f"{what} has no owner")
    controllers = [r for r in refs if isinstance(r, Mapping) and r.get("controller") is True]
    if len(controllers) != 1:
        raise NotOwned(f"{what} has {len(controllers)} controller references, not 1")
    return controllers[0]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _hop(
    obj: Mapping[str, Any], what: str, api_version: str, kind: str, namespace: str, owners: Objects
) -> Mapping[str, Any]:
    """The object ``obj``'s controller reference names, found in ``owners`` with the same UID."""
    ref = _controller(obj, what)
    name, uid = ref.get("name"), ref.get("uid")
    if ref.get("apiVersion") != api_version or ref.get("kind") != kind:
        raise NotOwned(f"{what} is controlled by a {ref.get('kind')!s:.40}, not a {kind}")
    if not isinstance(name, str) or not isinstance(uid, str) or not uid:
        raise NotOwned(f"{what} has a malformed controller reference")
    owner = owners.get(f"{namespace}/{name}")
    if owner is None:
        raise NotOwned(f"{kind} {name:.63} of {what} is not known")
    if _meta(owner).get("uid") != uid:
        raise NotOwned(f"{kind} {name:.63} of {what} has another UID than the reference")
    return owner


def check_owner_chain(
    pod: Mapping[str, Any],
    role: str,
    service_name: str,
    service_uid: str,
    replicasets: Objects,
    deployments: Objects,
) -> None:
    """Raises ``NotOwned`` unless the pod belongs to the service's Deployment of ``role``."""
    namespace = str(_meta(pod).get("namespace", ""))
    replicaset = _hop(pod, "the pod", "apps/v1", "ReplicaSet", namespace, replicasets)
    deployment = _hop(replicaset, "its ReplicaSet", "apps/v1", "Deployment", namespace, deployments)
    ref = _controller(deployment, "its Deployment")
    if ref.get("apiVersion") != API_VERSION or ref.get("kind") != KIND:
        raise NotOwned(f"its Deployment is controlled by a {ref.get('kind')!s:.40}, not a {KIND}")
    if ref.get("name") != service_name or ref.get("uid") != service_uid or not service_uid:
        raise NotOwned("its Deployment belongs to another service than the pod's label names")
    labels = _meta(deployment).get("labels")
    labels = labels if isinstance(labels, Mapping) else {}
    if labels.get(ROLE_LABEL) != role or labels.get(SERVICE_LABEL) != service_name:
        raise NotOwned("its Deployment's role or service labels differ from the pod's")
