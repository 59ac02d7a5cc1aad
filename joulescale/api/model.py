"""The model to serve: where its weights come from, the token for gated models, the cache."""

from __future__ import annotations

from pydantic import Field

from joulescale.api.base import ApiModel
from joulescale.api.containers import ObjectName

DEFAULT_TOKEN_KEY = "HF_TOKEN"


class SecretKeyRef(ApiModel):
    """One key of a Secret in the service's namespace."""

    name: ObjectName = Field(description="The Secret.")
    key: str = Field(
        default=DEFAULT_TOKEN_KEY,
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="The key that holds the token.",
    )


class ModelCacheSpec(ApiModel):
    """A PersistentVolumeClaim that holds downloaded weights across pod restarts and replicas.

    A claim, never a hostPath: a node's filesystem stays the cluster admin's to hand out (for
    example as local PersistentVolumes), not a tenant's to name."""

    claim_name: ObjectName = Field(description="The PersistentVolumeClaim, in the service's namespace.")
    read_only: bool = Field(
        default=False,
        description=(
            "Mount the claim read-only (a cache filled beforehand, e.g. a ReadOnlyMany volume "
            "shared by every replica); the engines then run with HF_HUB_OFFLINE=1."
        ),
    )


class ModelSpec(ApiModel):
    """The model to serve."""

    name: str = Field(
        min_length=1,
        max_length=253,
        description="The served model name clients send, e.g. meta-llama/Llama-3.3-70B.",
    )
    uri: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^(hf://|file:///)\S+$",
        description="Where the weights are: hf://ORG/NAME (Hugging Face) or file:///PATH; default hf://<name>.",
    )
    revision: str | None = Field(
        default=None, max_length=253, description="A Hugging Face revision (branch, tag, commit)."
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="The Hugging Face token for gated models: the engines get it as HF_TOKEN.",
    )
    cache: ModelCacheSpec | None = Field(
        default=None,
        description=(
            "A PersistentVolumeClaim for the weights, mounted at HF_HOME; default an emptyDir "
            "(the weights survive a container restart, not a new pod)."
        ),
    )
