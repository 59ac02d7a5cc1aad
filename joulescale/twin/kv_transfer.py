"""KV cache transfer from a prefill to a decode instance over a chosen medium.

The media numbers live in ``data/kv_media.csv`` (hardware numbers stay out of code). One link
per prefill instance carries its transfers one after another, so a burst of long prompts
queues on the link as it would on a NIC.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

_BYTES_PER_GB = 1e9


@dataclass(frozen=True, slots=True)
class KvMedium:
    name: str
    bandwidth_gb_per_s: float
    overhead_ms: float

    def transfer_s(self, tokens: int, kv_bytes_per_token: int) -> float:
        return self.overhead_ms / 1000.0 + tokens * kv_bytes_per_token / (self.bandwidth_gb_per_s * _BYTES_PER_GB)


@functools.cache
def kv_media() -> dict[str, KvMedium]:
    text = resources.files("joulescale.twin").joinpath("data", "kv_media.csv").read_text(encoding="utf-8")
    return {
        row["medium"]: KvMedium(row["medium"], float(row["bandwidth_gb_per_s"]), float(row["overhead_ms"]))
        for row in csv.DictReader(io.StringIO(text))
    }


def kv_medium(name: str) -> KvMedium:
    media = kv_media()
    if name not in media:
        raise ValueError(f"unknown KV transfer medium {name!r}; known: {', '.join(sorted(media))}")
    return media[name]


class KvLink:
    """The transfer queue of one prefill instance: returns when each transfer lands."""

    __slots__ = ("_busy_until_s", "_kv_bytes_per_token", "_medium")

    def __init__(self, medium: KvMedium, kv_bytes_per_token: int) -> None:
        self._medium = medium
        self._kv_bytes_per_token = kv_bytes_per_token
        self._busy_until_s = 0.0

    @property
    def busy_until_s(self) -> float:
        """When the last transfer queued on the link lands."""
        return self._busy_until_s

    def send(self, now_s: float, tokens: int) -> float:
        start = max(now_s, self._busy_until_s)
        self._busy_until_s = start + self._medium.transfer_s(tokens, self._kv_bytes_per_token)
        return self._busy_until_s
