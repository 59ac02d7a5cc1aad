"""The engine hook's settings in a service spec, and which engine versions it supports.

The hook (engine_hook/ in the repository, docs/engine-hook.md) relies on interfaces vLLM and
SGLang do not call public, so it is on by default only for the engine versions whose sources it
was checked against. The version is read from the image tag (``vllm/vllm-openai:v0.33.0``,
``lmsysorg/sglang:v0.5.23-cu126``): the only place a spec names it. A digest, ``latest`` or a tag
without a version leaves the hook off unless ``mode: "on"`` says the image is compatible.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from joulescale.api.base import ApiModel

HookMode = Literal["auto", "on", "off"]
Version = tuple[int, int, int]

SUPPORTED_VERSIONS: dict[str, tuple[Version, Version]] = {
    "vllm": ((0, 33, 0), (0, 34, 0)),
    "sglang": ((0, 5, 23), (0, 5, 24)),
}
"""Per engine, the first supported version and the first one past the range (exclusive)."""

_TAG_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:$|[-.+_])")


class EngineHookSpec(ApiModel):
    """Whether the engine publishes each step's batch to the node agent before it runs."""

    mode: HookMode = Field(
        default="auto",
        description=(
            "auto: on when the image tag names an engine version the hook supports "
            "(vLLM 0.33.x, SGLang 0.5.23); on: always (the image is known to be compatible); off: never."
        ),
    )
    inject: bool = Field(
        default=True,
        description=(
            "Copy the hook package into the engine container from the JouleScale hook image (an init "
            "container and PYTHONPATH), so a stock engine image works. false: the engine image "
            "installs joulescale-engine-hook itself."
        ),
    )
    base_scheduler: str | None = Field(
        default=None,
        min_length=3,
        max_length=256,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$",
        description=(
            "vLLM only: the scheduler class the deployment would pass to --scheduler-cls; the "
            "hook's scheduler derives from it instead of vLLM's AsyncScheduler."
        ),
    )


def image_version(image: str) -> Version | None:
    """The x.y.z an image tag starts with (after an optional v), or None."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = _TAG_VERSION.match(last.split(":", 1)[1])
    if match is None:
        return None
    return (int(match[1]), int(match[2]), int(match[3]))


def hook_enabled(engine_name: str, image: str, hook: EngineHookSpec) -> bool:
    """Whether the operator renders the hook for this engine and image."""
    if hook.mode != "auto":
        return hook.mode == "on"
    version = image_version(image)
    low, high = SUPPORTED_VERSIONS[engine_name]
    return version is not None and low <= version < high
