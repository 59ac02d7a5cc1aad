"""Containers of a pod template override: the engine container's patch and unprivileged sidecars.

An allowlist of the core API's Container: what is not modelled here is pruned by the apiserver,
and what would give a container host access or replace what the operator writes is refused by
name (see AllowlistModel).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from joulescale.api.base import AllowlistModel, ApiModel, cel, validations
from joulescale.api.engine import EnvVar
from joulescale.api.placement import ResourceRequirements

ENGINE_CONTAINER = "engine"
"""The name of the container that runs the engine; the operator writes its image and command."""

ENGINE_OWNED_FIELDS: dict[str, str] = {
    "image": "spec.engine.image",
    "imagePullPolicy": "spec.engine.image",
    "command": "spec.engine.args",
    "args": "spec.engine.args",
    "workingDir": "spec.engine",
    "ports": "spec.engine.port",
}
"""Fields of the engine container the operator writes, and where the spec sets them instead."""

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_OPERATOR = "the operator writes it"
_PROBES = "the operator writes the engine's probes; a probe's host makes the kubelet call any address"

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253)]
Text = Annotated[str, Field(max_length=4096)]
Path = Annotated[str, Field(min_length=1, max_length=4096)]


class Capabilities(AllowlistModel):
    """Linux capabilities may only be dropped."""

    REFUSED: ClassVar[Mapping[str, str]] = {"add": "containers may drop capabilities, never add them"}

    drop: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=64, description="Capabilities to drop, e.g. ALL."
    )


class SeccompProfile(ApiModel):
    """RuntimeDefault or a profile on the node; Unconfined is not offered."""

    type: Literal["RuntimeDefault", "Localhost"] = Field(description="RuntimeDefault or Localhost.")
    localhost_profile: Path | None = Field(default=None, description="The profile file, for Localhost.")


class SecurityContext(AllowlistModel):
    """What a container may say about its own security: only ever less privilege."""

    model_config = validations(
        cel(
            "!has(self.privileged) || !self.privileged",
            "privileged containers are not allowed",
            ".privileged",
        ),
        cel(
            "!has(self.allowPrivilegeEscalation) || !self.allowPrivilegeEscalation",
            "allowPrivilegeEscalation must not be true",
            ".allowPrivilegeEscalation",
        ),
    )
    REFUSED: ClassVar[Mapping[str, str]] = {
        "procMount": "an unmasked /proc exposes the node",
        "seLinuxOptions": "SELinux labels could select a host context",
        "windowsOptions": "the pods run on Linux GPU nodes",
        "appArmorProfile": "an Unconfined profile would lift the runtime's confinement",
    }

    privileged: bool | None = Field(default=None, description="Only false is allowed.")
    allow_privilege_escalation: bool | None = Field(default=None, description="Only false is allowed.")
    capabilities: Capabilities | None = Field(default=None, description="Capabilities to drop.")
    run_as_user: int | None = Field(default=None, ge=0, le=2_147_483_647, description="The user id.")
    run_as_group: int | None = Field(default=None, ge=0, le=2_147_483_647, description="The group id.")
    run_as_non_root: bool | None = Field(default=None, description="Refuse to start as root.")
    read_only_root_filesystem: bool | None = Field(default=None, description="A read-only root filesystem.")
    seccomp_profile: SeccompProfile | None = Field(default=None, description="The seccomp profile.")

    @field_validator("privileged", "allow_privilege_escalation")
    @classmethod
    def _not_true(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("must not be true: containers get no privileges")
        return value


class ContainerPort(AllowlistModel):
    """A port the container listens on, inside the pod's network namespace only."""

    REFUSED: ClassVar[Mapping[str, str]] = {
        "hostPort": "a host port binds the node's network",
        "hostIP": "a host IP binds the node's network",
    }

    name: Annotated[str, Field(max_length=15)] | None = Field(
        default=None, description="An IANA service name."
    )
    container_port: int = Field(ge=1, le=65535, description="The port number.")
    protocol: Literal["TCP", "UDP", "SCTP"] | None = Field(default=None, description="TCP, UDP or SCTP.")


class VolumeMount(AllowlistModel):
    """A volume of the pod mounted into the container."""

    REFUSED: ClassVar[Mapping[str, str]] = {
        "mountPropagation": "mount propagation shares mounts with the node"
    }

    name: Name = Field(description="The volume's name.")
    mount_path: Path = Field(description="Where to mount it.")
    sub_path: Path | None = Field(default=None, description="A path inside the volume.")
    sub_path_expr: Path | None = Field(default=None, description="subPath with $(VAR) expansion.")
    read_only: bool | None = Field(default=None, description="Mount read-only.")


class ConfigMapEnvSource(ApiModel):
    """A ConfigMap of the service's namespace."""

    name: ObjectName = Field(description="The ConfigMap.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class EnvFromSource(ApiModel):
    """Every key of a ConfigMap or Secret of the namespace as environment variables."""

    model_config = validations(
        cel("has(self.configMapRef) != has(self.secretRef)", "set exactly one of configMapRef or secretRef")
    )

    prefix: Annotated[str, Field(max_length=253)] | None = Field(default=None, description="A name prefix.")
    config_map_ref: ConfigMapEnvSource | None = Field(default=None, description="A ConfigMap.")
    secret_ref: ConfigMapEnvSource | None = Field(default=None, description="A Secret.")

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError("set exactly one of configMapRef or secretRef")
        return self


class Container(AllowlistModel):
    """A patch of the engine container (by its name, `engine`) or an unprivileged sidecar."""

    model_config = validations(
        *(
            cel(
                f"self.name != '{ENGINE_CONTAINER}' || !has(self.{field})",
                f"{field} of the {ENGINE_CONTAINER} container is written by the operator; set {source}",
                f".{field}",
            )
            for field, source in ENGINE_OWNED_FIELDS.items()
        ),
        cel(
            f"self.name == '{ENGINE_CONTAINER}' || has(self.image)",
            "a sidecar container needs an image",
            ".image",
        ),
    )
    REFUSED: ClassVar[Mapping[str, str]] = {
        "livenessProbe": _PROBES,
        "readinessProbe": _PROBES,
        "startupProbe": _PROBES,
        "lifecycle": "lifecycle hooks can make the kubelet call any address",
        "volumeDevices": "raw block devices are not offered",
        "restartPolicy": "init-style sidecars are not offered",
        "stdin": "interactive containers are not offered",
        "stdinOnce": "interactive containers are not offered",
        "tty": "interactive containers are not offered",
        "resizePolicy": _OPERATOR,
        "restartPolicyRules": "init-style sidecars are not offered",
        "terminationMessagePath": _OPERATOR,
        "terminationMessagePolicy": _OPERATOR,
    }

    name: Name = Field(
        description=f"`{ENGINE_CONTAINER}` patches the engine container; any other name adds a sidecar."
    )
    image: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        default=None, description="The sidecar's image (required for a sidecar, refused for the engine)."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="When to pull the sidecar's image."
    )
    command: list[Text] | None = Field(default=None, max_length=128, description="The sidecar's command.")
    args: list[Text] | None = Field(default=None, max_length=128, description="The sidecar's arguments.")
    working_dir: Path | None = Field(default=None, description="The sidecar's working directory.")
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=128,
        description="Environment variables, merged by name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] | None = Field(
        default=None, max_length=32, description="ConfigMaps and Secrets as environment variables."
    )
    ports: list[ContainerPort] | None = Field(default=None, max_length=32, description="The sidecar's ports.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Non-GPU resources; the engine's GPUs come from tensorParallelSize."
    )
    volume_mounts: list[VolumeMount] | None = Field(
        default=None, max_length=64, description="Volumes of the pod to mount, merged by name."
    )
    security_context: SecurityContext | None = Field(
        default=None, description="Less privilege only: no privileged, escalation or added capabilities."
    )

    @model_validator(mode="after")
    def _engine_or_sidecar(self) -> Container:
        if self.name == ENGINE_CONTAINER:
            given = self.model_fields_set_by_alias()
            owned = [field for field in ENGINE_OWNED_FIELDS if field in given]
            if owned:
                raise ValueError(
                    "; ".join(
                        f"{field} of the {ENGINE_CONTAINER} container is written by the operator; "
                        f"set {ENGINE_OWNED_FIELDS[field]}"
                        for field in owned
                    )
                )
        elif self.image is None:
            raise ValueError("a sidecar container needs an image")
        return self

    def model_fields_set_by_alias(self) -> set[str]:
        """The wire names of the fields the object sets."""
        fields = type(self).model_fields
        return {fields[name].alias or name for name in self.model_fields_set}
