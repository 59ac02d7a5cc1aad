"""Volumes a pod template override may add: emptyDir, configMap, secret, persistentVolumeClaim.

Every other volume source of the core API reaches the node (hostPath), another system (nfs,
iscsi, csi, ...) or a credential (projected service account tokens); each is refused by name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from joulescale.api.base import AllowlistModel, ApiModel, cel, validations
from joulescale.api.containers import Name, ObjectName, Path
from joulescale.api.placement import Quantity

SAFE_SOURCES = ("emptyDir", "configMap", "secret", "persistentVolumeClaim")

_NOT_SAFE = f"only {', '.join(SAFE_SOURCES)} volumes are allowed"

REFUSED_SOURCES = (
    "hostPath",
    "image",
    "projected",
    "downwardAPI",
    "ephemeral",
    "csi",
    "nfs",
    "iscsi",
    "rbd",
    "cephfs",
    "glusterfs",
    "fc",
    "flexVolume",
    "flocker",
    "gitRepo",
    "cinder",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
)
"""Every other volume source of the core API (v1.34)."""

Mode = Annotated[int, Field(ge=0, le=0o777)]


class KeyToPath(ApiModel):
    """One key of a ConfigMap or Secret as a file."""

    key: Annotated[str, Field(min_length=1, max_length=253)] = Field(description="The key.")
    path: Path = Field(description="The relative file path.")
    mode: Mode | None = Field(default=None, description="The file mode.")


class EmptyDir(ApiModel):
    """Scratch space, on the node's disk or in memory (e.g. /dev/shm)."""

    medium: Literal["", "Memory"] | None = Field(default=None, description="'' (disk) or Memory.")
    size_limit: Quantity | None = Field(default=None, description="The size limit.")


class ConfigMapVolume(ApiModel):
    """A ConfigMap of the service's namespace as files."""

    name: ObjectName = Field(description="The ConfigMap.")
    items: list[KeyToPath] | None = Field(default=None, max_length=64, description="Keys to project.")
    default_mode: Mode | None = Field(default=None, description="The files' mode.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class SecretVolume(ApiModel):
    """A Secret of the service's namespace as files."""

    secret_name: ObjectName = Field(description="The Secret.")
    items: list[KeyToPath] | None = Field(default=None, max_length=64, description="Keys to project.")
    default_mode: Mode | None = Field(default=None, description="The files' mode.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class PersistentVolumeClaimVolume(ApiModel):
    """A PersistentVolumeClaim of the service's namespace, e.g. a model cache."""

    claim_name: ObjectName = Field(description="The claim.")
    read_only: bool | None = Field(default=None, description="Mount read-only.")


class Volume(AllowlistModel):
    """A named volume of exactly one safe source."""

    model_config = validations(
        cel(
            " + ".join(f"(has(self.{source}) ? 1 : 0)" for source in SAFE_SOURCES) + " == 1",
            f"set exactly one source: {', '.join(SAFE_SOURCES)}",
        )
    )
    REFUSED = dict.fromkeys(REFUSED_SOURCES, _NOT_SAFE)

    name: Name = Field(description="The volume's name; volume mounts refer to it.")
    empty_dir: EmptyDir | None = Field(default=None, description="Scratch space.")
    config_map: ConfigMapVolume | None = Field(default=None, description="A ConfigMap.")
    secret: SecretVolume | None = Field(default=None, description="A Secret.")
    persistent_volume_claim: PersistentVolumeClaimVolume | None = Field(
        default=None, description="A PersistentVolumeClaim."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        sources = [self.empty_dir, self.config_map, self.secret, self.persistent_volume_claim]
        if sum(source is not None for source in sources) != 1:
            raise ValueError(f"set exactly one source: {', '.join(SAFE_SOURCES)}")
        return self
