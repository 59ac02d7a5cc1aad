"""The host-path file that names every GPU whose clock the agent locked.

A GPU is written here *before* its clock is locked and removed only *after* its reset
succeeded, so a crash at any point leaves a superset of the locked GPUs; the next agent
resets them at start-up.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._locked: set[str] = set(self._read())

    def _read(self) -> list[str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            # A torn or foreign file must not stop the agent; the GPUs it named are unknown, so
            # the caller resets every GPU it may touch (see ClockActuator.recover).
            log.warning(
                "state file %s unreadable (%s); treating every GPU as possibly locked", self.path, error
            )
            return ["*"]
        locked = data.get("locked_gpus", []) if isinstance(data, dict) else []
        return [str(u) for u in locked]

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w") as handle:
            json.dump({"locked_gpus": sorted(self._locked)}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    @property
    def locked(self) -> frozenset[str]:
        return frozenset(self._locked)

    def add(self, uuid: str) -> None:
        if uuid not in self._locked:
            self._locked.add(uuid)
            self._write()

    def remove(self, uuid: str) -> None:
        if uuid in self._locked:
            self._locked.discard(uuid)
            self._write()
