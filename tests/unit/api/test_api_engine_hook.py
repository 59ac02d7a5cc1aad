"""Which images get the engine hook by default: the version in the tag, within the checked range."""

from __future__ import annotations

import pytest

from joulescale.api.enginehook import SUPPORTED_VERSIONS, EngineHookSpec, hook_enabled, image_version


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("vllm/vllm-openai:v0.33.0", (0, 33, 0)),
        ("registry.local:5000/vllm/vllm-openai:0.33.1", (0, 33, 1)),
        ("lmsysorg/sglang:v0.5.23-cu126", (0, 5, 23)),
        ("lmsysorg/sglang:v0.5.23.post1", (0, 5, 23)),
        ("registry.local:5000/vllm", None),
        ("vllm/vllm-openai:latest", None),
        ("vllm/vllm-openai@sha256:" + "a" * 64, None),
        ("vllm/vllm-openai:v0.33", None),
        ("vllm/vllm-openai:v0.33.0rc1", None),
    ],
)
def test_the_version_comes_from_the_tag(image: str, version: tuple[int, int, int] | None) -> None:
    assert image_version(image) == version


def test_auto_is_on_exactly_inside_the_supported_range() -> None:
    auto = EngineHookSpec()
    for engine, (low, high) in SUPPORTED_VERSIONS.items():
        below = (low[0], low[1], low[2] - 1) if low[2] else (low[0], low[1] - 1, 99)
        assert hook_enabled(engine, "img:{}.{}.{}".format(*low), auto)
        assert not hook_enabled(engine, "img:{}.{}.{}".format(*below), auto)
        assert not hook_enabled(engine, "img:{}.{}.{}".format(*high), auto)
    assert hook_enabled("vllm", "img:latest", EngineHookSpec(mode="on"))
    assert not hook_enabled("vllm", "img:0.33.0", EngineHookSpec(mode="off"))
