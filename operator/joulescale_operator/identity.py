"""Who owns the children: names, labels, selectors and owner references (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from joulescale.api import API_VERSION, KIND

Role = Literal["prefill", "decode", "router"]
ENGINE_ROLES: tuple[Role, Role] = ("prefill", "decode")

MANAGER = "joulescale-operator"
"""The value of app.kubernetes.io/managed-by and the server-side apply field manager."""

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
SERVICE_LABEL = "joulescale.io/service"
ROLE_LABEL = "joulescale.io/role"
LLMD_ROLE_LABEL = "llm-d.ai/role"

CHILD_NAME_MAX_LENGTH = 63
LONGEST_SUFFIX = "-prefill"


@dataclass(frozen=True, slots=True)
class ServiceIdentity:
    """The EnergyAwareLLMService that children belong to."""

    namespace: str
    name: str
    uid: str
    generation: int

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ServiceIdentity:
        meta = body["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 0)),
        )

    def child_name(self, role: Role) -> str:
        return f"{self.name}-{role}"

    def selector(self, role: Role) -> dict[str, str]:
        """The immutable Deployment selector: only labels that never change for a role."""
        return {SERVICE_LABEL: self.name, ROLE_LABEL: role}

    def labels(self, role: Role, engine: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": engine,
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": role,
            MANAGED_BY_LABEL: MANAGER,
            SERVICE_LABEL: self.name,
            ROLE_LABEL: role,
            LLMD_ROLE_LABEL: role,
        }

    def owner_reference(self) -> dict[str, Any]:
        """Makes the garbage collector delete the children with the service."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, role: Role, engine: str) -> dict[str, Any]:
        return {
            "name": self.child_name(role),
            "namespace": self.namespace,
            "labels": self.labels(role, engine),
            "ownerReferences": [self.owner_reference()],
        }
