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
    """vllm/v1/request.py: the names the hook reads, plus the counters the stand-in keeps (slots)."""

    __slots__ = ("_outputs", "_placeholders", "arrival_time", "num_computed_tokens", "num_prompt_tokens")

    def __init__(self, prompt: int, arrival_wall_s: float) -> None:
        self.num_prompt_tokens = prompt
        self.num_computed_tokens = 0
        self.arrival_time = arrival_wall_s
        self._outputs = 0
        self._placeholders = 0


class NewRequestData:
    __slots__ = ("num_computed_tokens", "prompt_token_ids", "req_id")

    def __init__(self, req_id: str, prompt_token_ids: list[int] | None, num_computed_tokens: int) -> None:
        self.req_id, self.prompt_token_ids, self.num_computed_tokens = req_id, prompt_token_ids, num_computed_tokens


class CachedRequestData:
    __slots__ = ("num_computed_tokens", "num_output_tokens", "req_ids")

    def __init__(self) -> None:
        self.req_ids: list[str] = []
        self.num_computed_tokens: list[int] = []
        self.num_output_tokens: list[int] = []


class VllmSchedulerOutput:
    __slots__ = ("num_scheduled_tokens", "scheduled_cached_reqs", "scheduled_new_reqs")

    def __init__(self, num_scheduled_tokens: dict[str, int]) -> None:
        self.num_scheduled_tokens = num_scheduled_tokens
        self.scheduled_new_reqs: list[NewRequestData] = []
        self.scheduled_cached_reqs = CachedRequestData()


class StandInAsyncScheduler:
    """vLLM's async scheduler reduced to its pinned contract. ``schedule(throttle_prefills=False)``
    builds the output with each request's counts before the step (a request scheduled for the
    first time in ``scheduled_new_reqs``, the others in ``scheduled_cached_reqs`` with their
    output tokens and in-flight placeholders), then advances ``num_computed_tokens`` (as
    ``_update_after_schedule`` does) and adds a placeholder to a request past its prompt.
    ``update_from_output(scheduler_output, model_runner_output)`` turns those placeholders into
    output tokens. The test sets ``plan``, the tokens per request id of the next step."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.requests: dict[str, VllmRequest] = {}
        self.waiting: deque[VllmRequest] = deque()
        self.plan: dict[str, int] = {}
        self.scheduled_before: set[str] = set()
        self.calls: list[str] = []

    def schedule(self, throttle_prefills: bool = False) -> VllmSchedulerOutput:
        self.calls.append("schedule")
        output = VllmSchedulerOutput(dict(self.plan))
        for req_id in output.num_scheduled_tokens:
            req = self.requests[req_id]
            if req_id in self.scheduled_before:
                cached = output.scheduled_cached_reqs
                cached.req_ids.append(req_id)
                cached.num_computed_tokens.append(req.num_computed_tokens)
                cached.num_output_tokens.append(req._outputs + req._placeholders)
            else:
                output.scheduled_new_reqs.append(
                    NewRequestData(req_id, [7] * req.num_prompt_tokens, req.num_computed_tokens))
                self.scheduled_before.add(req_id)
        for req_id, n in output.num_scheduled_tokens.items():
            req = self.requests[req_id]
            req.num_computed_tokens += n
            if req.num_computed_tokens >= req.num_prompt_tokens:
                req._placeholders += 1
        return output

    def update_from_output(self, scheduler_output: VllmSchedulerOutput, model_runner_output: Any) -> dict[int, Any]:
        self.calls.append("update_from_output")
        for req_id in scheduler_output.num_scheduled_tokens:
            req = self.requests[req_id]
            if req._placeholders:
                req._placeholders -= 1
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
