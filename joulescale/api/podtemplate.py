"""The pod template override of a role: a typed allowlist of the core PodTemplateSpec.

A tenant may add environment, volumes of safe types, non-GPU resources, unprivileged sidecars,
labels and annotations outside joulescale.io, tolerations, affinity, a priority class and image
pull secrets. Every other PodSpec field of the core API is refused by name, by the apiserver and
again by the operator: none of them may give a pod of a shared GPU node access to the host, to
another identity, or to GPUs the operator did not assign.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator

from joulescale.api.base import GROUP, AllowlistModel, ApiModel, cel, validations
from joulescale.api.containers import ENGINE_CONTAINER, Container, ObjectName
from joulescale.api.placement import Toleration
from joulescale.api.volumes import Volume

RESERVED_DOMAIN = GROUP
"""Labels and annotations in this domain (and its subdomains) are the operator's and the agent's."""

_HOST = "it would share the node's namespaces with the pod"
_IDENTITY = "the pods run as the service account the operator assigns, without its token"
_SCHEDULING = "placement comes from spec.<role>.gpu, nodeSelector, tolerations and affinity"
_OPERATOR = "the operator writes it"

REFUSED_POD_FIELDS: dict[str, str] = {
    "hostPID": _HOST,
    "hostIPC": _HOST,
    "hostNetwork": _HOST,
    "hostUsers": _HOST,
    "shareProcessNamespace": "sidecars may not see or signal the engine's processes",
    "securityContext": "pod-level security (runAsUser, sysctls, seLinuxOptions, ...) is not overridable",
    "serviceAccountName": _IDENTITY,
    "serviceAccount": _IDENTITY,
    "automountServiceAccountToken": _IDENTITY,
    "nodeName": _SCHEDULING,
    "nodeSelector": _SCHEDULING,
    "schedulerName": _SCHEDULING,
    "topologySpreadConstraints": _SCHEDULING,
    "schedulingGates": _SCHEDULING,
    "runtimeClassName": "a runtime class may select an unsandboxed or privileged runtime",
    "initContainers": "only sidecars in containers are offered, without privileges",
    "ephemeralContainers": "ephemeral containers are for debugging by an administrator",
    "resourceClaims": "GPUs and other devices come from tensorParallelSize",
    "resources": "GPUs and other devices come from tensorParallelSize",
    "overhead": _OPERATOR,
    "priority": "set priorityClassName instead",
    "preemptionPolicy": "set priorityClassName instead",
    "restartPolicy": _OPERATOR,
    "activeDeadlineSeconds": _OPERATOR,
    "terminationGracePeriodSeconds": _OPERATOR,
    "readinessGates": _OPERATOR,
    "os": _OPERATOR,
    "hostAliases": _OPERATOR,
    "hostname": _OPERATOR,
    "hostnameOverride": _OPERATOR,
    "subdomain": _OPERATOR,
    "setHostnameAsFQDN": _OPERATOR,
    "dnsPolicy": _OPERATOR,
    "dnsConfig": _OPERATOR,
    "enableServiceLinks": _OPERATOR,
}
"""Every PodSpec field of the core API (v1.34) that is not in the allowlist, and why."""

LabelKey = Annotated[str, Field(min_length=1, max_length=317)]


RESERVED_KEY_PATTERNS = (
    "^([^/]*[.])?" + RESERVED_DOMAIN.replace(".", "[.]") + "/",
    "^[^/]*security[^/]*[.]kubernetes[.]io/",
)
"""Keys in the joulescale.io domain (and subdomains), and keys of Kubernetes' security domains
such as container.apparmor.security.beta.kubernetes.io/, which would lift a confinement."""

_RESERVED_MESSAGE = (
    "{field} in the " + RESERVED_DOMAIN + " domain (the operator's: they select and steer the pods) "
    "or in a Kubernetes security domain (they lift a confinement) are refused"
)


def is_reserved_key(key: str) -> bool:
    """True for joulescale.io/..., <sub>.joulescale.io/... and *security*.kubernetes.io/... keys."""
    return any(re.match(pattern, key.lower()) for pattern in RESERVED_KEY_PATTERNS)


def _unreserved_rule(field: str) -> dict[str, Any]:
    matches = " || ".join(f"k.lowerAscii().matches('{pattern}')" for pattern in RESERVED_KEY_PATTERNS)
    return cel(
        f"!has(self.{field}) || self.{field}.all(k, !({matches}))",
        _RESERVED_MESSAGE.format(field=field),
        f".{field}",
    )


class PodMetadata(AllowlistModel):
    """Labels and annotations added to the pods; the operator's own keys always win."""

    model_config = validations(_unreserved_rule("labels"), _unreserved_rule("annotations"))
    REFUSED = dict.fromkeys(("name", "generateName", "namespace", "ownerReferences", "finalizers"), _OPERATOR)

    labels: dict[LabelKey, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=64, description=f"Extra pod labels, outside {RESERVED_DOMAIN}."
    )
    annotations: dict[LabelKey, Annotated[str, Field(max_length=65536)]] | None = Field(
        default=None, max_length=64, description=f"Extra pod annotations, outside {RESERVED_DOMAIN}."
    )

    @field_validator("labels", "annotations")
    @classmethod
    def _unreserved(cls, values: dict[str, str] | None) -> dict[str, str] | None:
        reserved = sorted(key for key in values or {} if is_reserved_key(key))
        if reserved:
            raise ValueError(f"{', '.join(reserved)}: " + _RESERVED_MESSAGE.format(field="keys"))
        return values


AnyObject = Annotated[dict[str, Any], Field(json_schema_extra={"type": "object"})]


class Affinity(ApiModel):
    """Node and pod (anti-)affinity, as in the core API; node terms are ANDed with the GPU products."""

    node_affinity: AnyObject | None = Field(default=None, description="Node affinity.")
    pod_affinity: AnyObject | None = Field(default=None, description="Pod affinity.")
    pod_anti_affinity: AnyObject | None = Field(default=None, description="Pod anti-affinity.")


class LocalObjectReference(ApiModel):
    """An object of the service's namespace, by name."""

    name: ObjectName = Field(description="The name.")


SYSTEM_PRIORITY_PREFIX = "system-"
"""Kubernetes reserves these priority classes (system-node-critical, system-cluster-critical) for
the components a node cannot run without; with one, a tenant's pods would preempt any other's."""


class PodSpecOverride(AllowlistModel):
    """The allowed part of a PodSpec."""

    model_config = validations(
        cel(
            f"!has(self.priorityClassName) || !self.priorityClassName.startsWith('{SYSTEM_PRIORITY_PREFIX}')",
            f"{SYSTEM_PRIORITY_PREFIX}* priority classes are reserved for the cluster's own components",
            ".priorityClassName",
        )
    )

    REFUSED = REFUSED_POD_FIELDS

    containers: list[Container] | None = Field(
        default=None,
        max_length=8,
        description=f"Patches of the {ENGINE_CONTAINER} container and sidecars, merged by name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    volumes: list[Volume] | None = Field(
        default=None,
        max_length=32,
        description="Extra volumes of safe types, merged by name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Tolerations added to the operator's."
    )
    affinity: Affinity | None = Field(default=None, description="Affinity added to the GPU product affinity.")
    priority_class_name: ObjectName | None = Field(default=None, description="The pods' priority class.")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, max_length=16, description="Secrets to pull the images with."
    )

    @field_validator("priority_class_name")
    @classmethod
    def _not_system(cls, name: str | None) -> str | None:
        if name is not None and name.startswith(SYSTEM_PRIORITY_PREFIX):
            raise ValueError(
                f"{name}: {SYSTEM_PRIORITY_PREFIX}* priority classes are reserved for the cluster"
            )
        return name


class PodTemplateOverride(ApiModel):
    """A partial pod template merged over the rendered one; only allowlisted fields exist."""

    metadata: PodMetadata | None = Field(default=None, description="Extra labels and annotations.")
    spec: PodSpecOverride | None = Field(default=None, description="The allowed part of the pod spec.")
