"""What every engine adapter shares: one publisher per engine process, made on first use from
the environment the operator renders, and a guard that keeps the hook's failures its own."""

from __future__ import annotations

import logging
import os
import time

from joulescale_hook.transport import HookPublisher, socket_path_from_env

logger = logging.getLogger("joulescale_hook")

_publisher: HookPublisher | None = None
_publisher_pid: int | None = None
_failures = 0


def process_publisher() -> HookPublisher | None:
    """This process's publisher, or None when no socket path is configured. Made lazily, so an
    engine that forks or spawns its scheduler process gets the thread where the scheduler runs."""
    global _publisher, _publisher_pid
    pid = os.getpid()
    if _publisher_pid == pid:
        return _publisher
    _publisher_pid = pid
    path = socket_path_from_env()
    _publisher = HookPublisher(path) if path else None
    if path:
        logger.info("JouleScale engine hook publishing to %s", path)
    else:
        logger.warning("JouleScale engine hook loaded but no socket configured "
                       "(JOULESCALE_POD_UID or JOULESCALE_HOOK_SOCKET unset): publishing nothing")
    return _publisher


def record_failure(where: str) -> None:
    """Count an exception the hook caught on the engine's path; log the first with its trace."""
    global _failures
    _failures += 1
    if _failures == 1:
        logger.exception("JouleScale engine hook failed in %s; the engine is unaffected, "
                         "further failures are counted, not logged", where)


def failures() -> int:
    return _failures


def wall_to_monotonic_ns(wall_s: float, now_mono_ns: int, now_wall_ns: int) -> int:
    """A wall-clock instant (vLLM's arrival_time) on the monotonic clock of the messages."""
    return int(wall_s * 1e9) - (now_wall_ns - now_mono_ns)


def monotonic_ns() -> int:
    return time.monotonic_ns()


def reset() -> None:
    """Forget this process's publisher (tests; a new socket path takes effect on next use)."""
    global _publisher, _publisher_pid, _failures
    if _publisher is not None:
        _publisher.close()
    _publisher, _publisher_pid, _failures = None, None, 0
