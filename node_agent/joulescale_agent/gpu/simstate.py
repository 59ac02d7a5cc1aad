"""The shared state of simulated GPUs: a directory of small JSON files on one host.

The agent's simulated backend writes clock locks; a simulated engine reads the effective clock
at each iteration and adds the energy of the load it ran. Writes are atomic (rename), times
are monotonic seconds (shared across the processes of one Linux host).

Layout: ``gpus.json`` (the devices and their spec), ``<uuid>.lock.json`` (written by the
agent), ``<uuid>.energy.json`` (written by the engine).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from joulescale.profiles import GpuProfile
from joulescale.profiles.settle import ClockChange
from joulescale_agent import errors


@dataclass(frozen=True, slots=True)
class SimGpuSpec:
    """One simulated GPU; the numbers come from a profile (see joulescale.profiles)."""

    uuid: str
    name: str
    supported_sm_clocks_mhz: tuple[int, ...]
    settle_s: float
    """Time a clock change takes to become effective."""
    idle_watts: float
    default_sm_clock_mhz: int = 0
    """Clock with no lock (0: the top supported clock, i.e. boost)."""
    allow_lock: bool = True
    """False models a process without NVML permission to lock clocks."""
    mig_enabled: bool = False
    lock_supported: bool = True
    """False models a GPU whose driver answers NotSupported to clock locking."""

    @property
    def default_mhz(self) -> int:
        return self.default_sm_clock_mhz or max(self.supported_sm_clocks_mhz)


@dataclass(frozen=True, slots=True)
class LockState:
    locked_mhz: int | None
    previous_mhz: int
    """Effective clock when the change was requested; it holds until ``changed_at_s + settle_s``."""
    changed_at_s: float


@dataclass(slots=True)
class EnergyState:
    energy_mj: float = 0.0
    power_watts: float = 0.0
    updated_at_s: float | None = None


def _write_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


MAX_STATE_BYTES = 1 << 20


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise ValueError(f"larger than {MAX_STATE_BYTES} bytes")
        data = json.loads(raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as error:
        raise errors.GpuUnavailableError(f"simulated GPU state {path.name}: {error}") from error
    if not isinstance(data, dict):
        raise errors.GpuUnavailableError(f"simulated GPU state {path.name} is not an object")
    return data


class SimGpuDir:
    """Reads and writes the shared files; no physics beyond the settle rule."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, root: Path, specs: list[SimGpuSpec]) -> SimGpuDir:
        root.mkdir(parents=True, exist_ok=True)
        payload = {"gpus": [asdict(s) for s in specs]}
        _write_atomic(root / "gpus.json", payload)
        return cls(root)

    def specs(self) -> list[SimGpuSpec]:
        data = _read(self.root / "gpus.json")
        if data is None:
            raise errors.GpuUnavailableError(f"no simulated GPUs in {self.root}")
        specs = []
        try:
            for item in data["gpus"]:
                item = dict(item)
                item["supported_sm_clocks_mhz"] = tuple(
                    sorted(int(c) for c in item["supported_sm_clocks_mhz"])
                )
                specs.append(SimGpuSpec(**item))
        except (KeyError, TypeError, ValueError) as error:
            raise errors.GpuUnavailableError(
                f"simulated GPUs in {self.root}: malformed gpus.json: {error}"
            ) from None
        if not specs or any(not spec.supported_sm_clocks_mhz for spec in specs):
            raise errors.GpuUnavailableError(f"simulated GPUs in {self.root}: no GPU with supported clocks")
        return specs

    def read_lock(self, uuid: str) -> LockState | None:
        data = _read(self.root / f"{uuid}.lock.json")
        if data is None:
            return None
        return LockState(data["locked_mhz"], int(data["previous_mhz"]), float(data["changed_at_s"]))

    def write_lock(self, uuid: str, state: LockState) -> None:
        _write_atomic(self.root / f"{uuid}.lock.json", asdict(state))

    def read_energy(self, uuid: str) -> EnergyState:
        data = _read(self.root / f"{uuid}.energy.json")
        if data is None:
            return EnergyState()
        return EnergyState(float(data["energy_mj"]), float(data["power_watts"]), data.get("updated_at_s"))

    def write_energy(self, uuid: str, state: EnergyState) -> None:
        _write_atomic(self.root / f"{uuid}.energy.json", asdict(state))


def clock_change(spec: SimGpuSpec, lock: LockState | None) -> ClockChange | None:
    """The lock file as the core's clock change (None: no lock was ever written)."""
    if lock is None:
        return None
    target = lock.locked_mhz if lock.locked_mhz is not None else spec.default_mhz
    return ClockChange(lock.previous_mhz, target, lock.changed_at_s + spec.settle_s)


def effective_clock_mhz(spec: SimGpuSpec, lock: LockState | None, now_s: float) -> int:
    """The clock the simulated GPU runs at ``now_s``, by the core's settle rule (joulescale.profiles.settle)."""
    change = clock_change(spec, lock)
    return spec.default_mhz if change is None else change.clock_at(now_s)


class SimGpuMeter:
    """The engine side: integrates the power of the load it is given into the energy counter."""

    def __init__(self, directory: SimGpuDir, uuid: str) -> None:
        self._dir = directory
        self._uuid = uuid
        self._state = directory.read_energy(uuid)

    def set_power(self, now_s: float, power_watts: float) -> None:
        """Close the interval since the last update at the old power; continue at the new one."""
        if self._state.updated_at_s is not None and now_s > self._state.updated_at_s:
            self._state.energy_mj += self._state.power_watts * (now_s - self._state.updated_at_s) * 1000.0
        self._state.updated_at_s = now_s
        self._state.power_watts = power_watts
        self._dir.write_energy(self._uuid, self._state)

    @property
    def energy_mj(self) -> float:
        return self._state.energy_mj


def specs_from_profile(profile: GpuProfile, uuids: list[str], **overrides: Any) -> list[SimGpuSpec]:
    """Simulated GPUs with the clocks, settle time and idle power of a profile."""
    return [
        SimGpuSpec(
            uuid=uuid,
            name=profile.gpu_product,
            supported_sm_clocks_mhz=profile.supported_sm_clocks_mhz,
            settle_s=profile.clock_settle_ms / 1000.0,
            idle_watts=profile.idle_power_watts,
            **overrides,
        )
        for uuid in uuids
    ]
