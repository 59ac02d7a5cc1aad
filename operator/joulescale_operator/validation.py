"""What the schema cannot reject: checked before any child is touched (pure).

A failure here becomes Ready=False reason=InvalidSpec and a Warning event; no child is
created or changed until the spec is fixed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pydantic

from joulescale.api import EnergyAwareLLMServiceSpec, parse_spec
from joulescale_operator.enginehook import PACKAGE_PATH
from joulescale_operator.engines import MANAGED_FLAGS
from joulescale_operator.identity import CHILD_NAME_MAX_LENGTH, LONGEST_SUFFIX, ServiceIdentity
from joulescale_operator.pods import ForbiddenPodTemplate
from joulescale_operator.render import render_children

_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class InvalidSpec(Exception):
    """The spec passed the schema but cannot be served; the message names the field."""

    message: str

    def __str__(self) -> str:
        return self.message


def validated_spec(identity: ServiceIdentity, raw_spec: dict[str, Any]) -> EnergyAwareLLMServiceSpec:
    """The parsed spec, or InvalidSpec with every problem found."""
    try:
        spec = parse_spec(raw_spec)
    except pydantic.ValidationError as error:
        raise InvalidSpec("; ".join(_describe(e) for e in error.errors())) from error
    problems = [*_name_problems(identity), *_managed_flag_problems(spec), *_hook_problems(spec)]
    if not problems:
        problems += _rendered_problems(identity, spec)
    if problems:
        raise InvalidSpec("; ".join(problems))
    return spec


def _describe(error: Any) -> str:
    location = "spec." + ".".join(str(part) for part in error["loc"]) if error["loc"] else "spec"
    return f"{location}: {error['msg']}"


def _name_problems(identity: ServiceIdentity) -> list[str]:
    limit = CHILD_NAME_MAX_LENGTH - len(LONGEST_SUFFIX)
    if len(identity.name) > limit or not _DNS_1035_LABEL.match(identity.name):
        return [
            f"metadata.name: {identity.name!r} must be a DNS-1035 label of at most {limit} characters "
            "(it names the child Services)"
        ]
    return []


def _managed_flag_problems(spec: EnergyAwareLLMServiceSpec) -> list[str]:
    managed = MANAGED_FLAGS[spec.engine.name]
    repeated = sorted({arg.split("=", 1)[0] for arg in spec.engine.args} & set(managed))
    if repeated:
        return [f"spec.engine.args: {', '.join(repeated)} is set by the operator from the spec; remove it"]
    return []


def _hook_problems(spec: EnergyAwareLLMServiceSpec) -> list[str]:
    """With the hook on, the engine must load it: vLLM takes one --scheduler-cls (a deployment's
    own class goes in hook.baseScheduler, which ours derives from), and an injected package must
    stay on the engine's PYTHONPATH."""
    engine = spec.engine
    if not engine.hook_enabled():
        return []
    problems = []
    if engine.name == "vllm" and any(arg.split("=", 1)[0] == "--scheduler-cls" for arg in engine.args):
        problems.append(
            "spec.engine.args: --scheduler-cls is the engine hook's while it is on; "
            "set spec.engine.hook.baseScheduler to the class, or spec.engine.hook.mode: off"
        )
    if engine.hook.inject:
        for env in engine.env:
            if env.name == "PYTHONPATH" and PACKAGE_PATH not in (env.value or "").split(":"):
                problems.append(
                    f"spec.engine.env: PYTHONPATH must include {PACKAGE_PATH}, where the engine hook "
                    "is copied (or set spec.engine.hook.inject: false with the package in the image)"
                )
    return problems


def _rendered_problems(identity: ServiceIdentity, spec: EnergyAwareLLMServiceSpec) -> list[str]:
    """A pod template override must keep the labels the Deployment selects on and must not give
    the pods host access (the merged template is checked, whatever the input)."""
    problems = []
    try:
        children = render_children(identity, spec)
    except ForbiddenPodTemplate as error:
        return [str(error)]
    for child in children:
        if child["kind"] != "Deployment":
            continue
        selector = child["spec"]["selector"]["matchLabels"]
        labels = child["spec"]["template"].get("metadata", {}).get("labels", {})
        if any(labels.get(key) != value for key, value in selector.items()):
            role = selector.get("joulescale.io/role", "?")
            problems.append(f"spec.{role}.podTemplate.metadata.labels: must keep {selector}")
    return problems
