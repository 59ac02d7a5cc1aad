"""Stand-ins for the engine classes the hook touches, with exactly the pinned names
(pinned_signatures.py) and the behaviour the pinned sources document; no engine code."""

from __future__ import annotations

import ast
import inspect
import time
from collections import deque
from pathlib import Path
from types import ModuleType
from typing import Any


class VllmRequest:
    """vllm/v1/request.py: the four names the hook reads, nothing else (slots)."""

    __slots__ = ("_outputs", "arrival_time", "num_computed_tokens", "num_prompt_tokens")

    def __init__(self, prompt: int, arrival_wall_s: float) -> None:
        self.num_prompt_tokens = prompt
        self.num_computed_tokens = 0
        self.arrival_time = arrival_wall_s
        self._outputs = 0

    @property
    def num_output_tokens(self) -> int:
        return self._outputs


class VllmSchedulerOutput:
    __slots__ = ("num_scheduled_tokens",)

    def __init__(self, num_scheduled_tokens: dict[str, int]) -> None:
        self.num_scheduled_tokens = num_scheduled_tokens


class StandInAsyncScheduler:
    """vLLM's scheduler reduced to its pinned contract: ``schedule(throttle_prefills=False)``
    advances each scheduled request's ``num_computed_tokens`` before returning (as
    ``_update_after_schedule`` does) and ``update_from_output(scheduler_output,
    model_runner_output)`` appends one output token per request past its prompt. The test sets
    ``plan``: the tokens per request id of the next step, and moves requests from ``waiting``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.requests: dict[str, VllmRequest] = {}
        self.waiting: deque[VllmRequest] = deque()
        self.plan: dict[str, int] = {}
        self.calls: list[str] = []

    def schedule(self, throttle_prefills: bool = False) -> VllmSchedulerOutput:
        self.calls.append("schedule")
        output = VllmSchedulerOutput(dict(self.plan))
        for req_id, n in output.num_scheduled_tokens.items():
            self.requests[req_id].num_computed_tokens += n
        return output

    def update_from_output(self, scheduler_output: VllmSchedulerOutput, model_runner_output: Any) -> dict[int, Any]:
        self.calls.append("update_from_output")
        for req_id in scheduler_output.num_scheduled_tokens:
            req = self.requests[req_id]
            if req.num_computed_tokens >= req.num_prompt_tokens:
                req._outputs += 1
        return {0: model_runner_output}


def assert_overrides_bind(cls: type, method: str, pinned_params: tuple[str, ...]) -> None:
    """The override accepts a call made exactly as the engine calls the pinned method: every
    parameter positionally, and every defaulted one by keyword too."""
    sig = inspect.signature(getattr(cls, method))
    required = [p for p in pinned_params if "=" not in p]
    defaulted = [p.split("=")[0] for p in pinned_params if "=" in p]
    sig.bind(object(), *([None] * len(pinned_params)))
    sig.bind(object(), *([None] * len(required)), **dict.fromkeys(defaulted))
    sig.bind(object(), *([None] * len(required)))


def engine_attributes_read(module: ModuleType, roots: set[str], within: str | None = None) -> set[str]:
    """Names of attributes the module (or its class or function ``within``) reads on variables
    called ``roots`` or on attributes of them, and every name given to ``attrgetter``, from its
    source: what it relies on in the engine's objects."""
    tree: ast.AST = ast.parse(Path(inspect.getfile(module)).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "attrgetter"):
            names.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    if within is not None:
        tree = next(n for n in ast.walk(tree)
                    if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == within)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        base: ast.expr = node.value
        while isinstance(base, ast.Attribute):
            base = base.value
        if isinstance(base, ast.Name) and base.id in roots:
            names.add(node.attr)
    return names


def now_wall_s() -> float:
    return time.time()
