"""spec.engine.hook in the rendered engine pods: the flag or variable that loads the hook, the
pod's own subdirectory of the node's hook directory, the injected package, and the guards that
keep one pod away from another's socket."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

import pydantic
import pytest

from joulescale.api import parse_spec
from joulescale_operator.enginehook import HookSettings
from joulescale_operator.identity import ServiceIdentity
from joulescale_operator.main import parse_settings
from joulescale_operator.podguard import host_access_problems
from joulescale_operator.render import render_children
from joulescale_operator.validation import InvalidSpec, validated_spec

IDENTITY = ServiceIdentity(namespace="ns", name="llama", uid="uid-1", generation=1)
VLLM = {"image": "vllm/vllm-openai:v0.33.0"}
SGLANG = {"name": "sglang", "image": "lmsysorg/sglang:v0.5.23-cu126"}
UID_ENV = {"name": "JOULESCALE_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}


def pod(body: dict[str, Any], role: str = "decode", hook: HookSettings | None = None) -> dict[str, Any]:
    kwargs = {} if hook is None else {"hook": hook}
    children = render_children(IDENTITY, parse_spec(body["spec"]), None, **kwargs)
    deployment = next(c for c in children if c["metadata"]["name"] == f"llama-{role}")
    return deployment["spec"]["template"]  # type: ignore[no-any-return]


def engine(template: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in template["spec"]["containers"] if c["name"] == "engine")  # type: ignore[no-any-return]


def env_of(template: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in engine(template)["env"]}


def test_vllm_at_a_supported_version_loads_the_scheduler_and_mounts_its_own_directory(
    body_factory: Callable[..., Any],
) -> None:
    template = pod(body_factory(engine=VLLM), hook=HookSettings(host_dir="/var/lib/js-hook"))
    command = engine(template)["command"]
    assert command[command.index("--scheduler-cls") + 1] == "joulescale_hook.vllm_scheduler.JouleScaleScheduler"
    env = env_of(template)
    assert env["JOULESCALE_POD_UID"] == UID_ENV["valueFrom"]
    assert env["JOULESCALE_HOOK_SOCKET"] == "/run/joulescale/hook/hook.sock"
    assert env["PYTHONPATH"] == "/opt/joulescale-hook"
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["joulescale-hook"] == {
        "name": "joulescale-hook", "hostPath": {"path": "/var/lib/js-hook", "type": "DirectoryOrCreate"}}
    mounts = {m["name"]: m for m in engine(template)["volumeMounts"]}
    assert mounts["joulescale-hook"] == {
        "name": "joulescale-hook", "mountPath": "/run/joulescale/hook", "subPathExpr": "$(JOULESCALE_POD_UID)"}
    assert mounts["joulescale-hook-package"]["readOnly"] is True
    (init,) = template["spec"]["initContainers"]
    assert init["image"] == f"ghcr.io/joulescale/joulescale-engine-hook:{metadata.version('joulescale')}"
    assert init["command"] == ["cp", "-R", "/hook/.", "/opt/joulescale-hook"]
    assert host_access_problems(template, template) == []


def test_an_unsupported_or_unknown_version_renders_no_hook(body_factory: Callable[..., Any]) -> None:
    for image in ("vllm/vllm-openai:v0.11.0", "vllm/vllm-openai:v0.34.0", "vllm/vllm-openai:latest",
                  "vllm/vllm-openai@sha256:" + "0" * 64):
        template = pod(body_factory(engine={"image": image}))
        assert "--scheduler-cls" not in engine(template)["command"], image
        assert "joulescale-hook" not in {v["name"] for v in template["spec"]["volumes"]}, image
        assert "initContainers" not in template["spec"], image
        assert not any(name.startswith("JOULESCALE_") for name in env_of(template)), image


def test_mode_on_and_off_override_the_version(body_factory: Callable[..., Any]) -> None:
    forced = pod(body_factory(engine={"image": "my/vllm:custom", "hook": {"mode": "on"}}))
    assert "--scheduler-cls" in engine(forced)["command"]
    off = pod(body_factory(engine={**VLLM, "hook": {"mode": "off"}}))
    assert "--scheduler-cls" not in engine(off)["command"]
    assert "initContainers" not in off["spec"]


def test_sglang_enables_the_plugin_by_variable(body_factory: Callable[..., Any]) -> None:
    template = pod(body_factory(engine=SGLANG), role="prefill")
    assert "--scheduler-cls" not in engine(template)["command"]
    env = env_of(template)
    assert env["SGLANG_PLUGINS"] == "joulescale_hook"
    assert env["JOULESCALE_HOOK_SOCKET"] == "/run/joulescale/hook/hook.sock"


def test_a_deployments_own_scheduler_becomes_the_hooks_base(body_factory: Callable[..., Any]) -> None:
    template = pod(body_factory(engine={**VLLM, "hook": {"baseScheduler": "acme.sched.FairScheduler"}}))
    assert env_of(template)["JOULESCALE_HOOK_BASE_SCHEDULER"] == "acme.sched.FairScheduler"
    with pytest.raises(InvalidSpec, match="baseScheduler"):
        validated_spec(IDENTITY, body_factory(engine={**VLLM, "args": ["--scheduler-cls", "acme.S"]})["spec"])
    validated_spec(IDENTITY, body_factory(engine={**VLLM, "hook": {"mode": "off"},
                                                  "args": ["--scheduler-cls", "acme.S"]})["spec"])


def test_an_image_with_the_package_needs_no_injection(body_factory: Callable[..., Any]) -> None:
    template = pod(body_factory(engine={**VLLM, "hook": {"inject": False}}))
    assert "initContainers" not in template["spec"]
    assert "PYTHONPATH" not in env_of(template)
    assert "joulescale-hook" in {v["name"] for v in template["spec"]["volumes"]}


def test_a_pythonpath_without_the_injected_package_is_refused(body_factory: Callable[..., Any]) -> None:
    body = body_factory(engine={**VLLM, "env": [{"name": "PYTHONPATH", "value": "/app"}]})
    with pytest.raises(InvalidSpec, match="PYTHONPATH must include /opt/joulescale-hook"):
        validated_spec(IDENTITY, body["spec"])
    ok = body_factory(engine={**VLLM, "env": [{"name": "PYTHONPATH", "value": "/app:/opt/joulescale-hook"}]})
    validated_spec(IDENTITY, ok["spec"])


def test_a_tenant_cannot_set_the_pod_uid_that_names_its_directory(body_factory: Callable[..., Any]) -> None:
    body = body_factory(engine={**VLLM, "env": [{"name": "JOULESCALE_POD_UID", "value": "other-pod"}]})
    with pytest.raises(pydantic.ValidationError, match="JOULESCALE_"):
        parse_spec(body["spec"])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s["containers"].append(
            {"name": "spy", "image": "i", "volumeMounts": [{"name": "joulescale-hook", "mountPath": "/all"}]}),
         "containers[spy].volumeMounts[joulescale-hook]"),
        (lambda s: s["containers"][0]["volumeMounts"].__setitem__(
            -2, {"name": "joulescale-hook", "mountPath": "/run/joulescale/hook"}),
         "containers[engine].volumeMounts[joulescale-hook]"),
        (lambda s: s["containers"][0]["env"].__setitem__(
            [e["name"] for e in s["containers"][0]["env"]].index("JOULESCALE_POD_UID"),
            {"name": "JOULESCALE_POD_UID", "value": "other-pod"}),
         "env[JOULESCALE_POD_UID]"),
        (lambda s: s["initContainers"].append({"name": "x", "image": "i"}), "initContainers"),
        (lambda s: s["volumes"].__setitem__(
            [v["name"] for v in s["volumes"]].index("joulescale-hook"),
            {"name": "joulescale-hook", "hostPath": {"path": "/"}}),
         "volumes[joulescale-hook]"),
    ],
)
def test_the_guard_keeps_the_hook_directory_as_rendered(
    body_factory: Callable[..., Any], change: Callable[[dict[str, Any]], None], named: str
) -> None:
    import copy

    rendered = pod(body_factory(engine=VLLM))
    merged = copy.deepcopy(rendered)
    change(merged["spec"])
    assert any(named in problem for problem in host_access_problems(rendered, merged)), named


def test_a_hook_directory_in_a_pod_without_the_hook_is_refused(body_factory: Callable[..., Any]) -> None:
    hooked = pod(body_factory(engine=VLLM))
    plain = pod(body_factory())
    assert host_access_problems(plain, hooked)


def test_the_operator_takes_the_node_directory_and_the_image_from_its_flags() -> None:
    settings, _, _ = parse_settings(["--hook-host-dir", "/srv/hook", "--hook-image", "reg/hook:1"])
    assert settings.hook == HookSettings(host_dir="/srv/hook", image="reg/hook:1")
    assert parse_settings([])[0].hook == HookSettings()
