"""The engine hook on a twin instance (rich view only): one place for the reader a prefill or a
decode instance publishes to, and the id of the latest step it published."""

from __future__ import annotations

from joulescale.engines.hook_publish import HookSink, StepHook


class Hooked:
    """Base of the twin's engine instances; without a reader the instance publishes nothing."""

    __slots__ = ("_hook",)

    def __init__(self) -> None:
        self._hook: StepHook | None = None

    @property
    def hook(self) -> HookSink | None:
        """The engine hook's reader (rich view only): the messages a hooked engine publishes."""
        return self._hook.sink if self._hook is not None else None

    @hook.setter
    def hook(self, sink: HookSink | None) -> None:
        self._hook = StepHook(sink) if sink is not None else None

    @property
    def hook_step(self) -> int:
        """The id of the latest step the hook published (0 without a hook)."""
        return self._hook.published if self._hook is not None else 0
