"""Instances from a JSON file, re-read when it changes: for loopback tests, demos and nodes
without Kubernetes. The same InstancePolicy reaches the loops as from the Kubernetes source."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

from joulescale.api.energy import PolicyTuning
from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.policy import ClockBounds, Slo
from joulescale_agent.control.instance import EngineInstance, InstancePolicy
from joulescale_agent.discovery.base import Desired
from joulescale_agent.discovery.desired import claim_gpus

log = logging.getLogger(__name__)


def parse_instances(data: Any) -> dict[str, tuple[EngineInstance, InstancePolicy]]:
    """``{"instances": [{namespace, pod, role, engine, metrics_url, gpus, policy: {...}}]}``; a policy
    may carry ``energy`` (spec.energy's settings, wire names) and ``token_budget``; an instance may
    carry its pod's ``uid`` (its engine hook socket is ``<hook dir>/<uid>.sock``)."""
    desired: dict[str, tuple[EngineInstance, InstancePolicy]] = {}
    for item in data.get("instances", []):
        p = item["policy"]
        bounds = p.get("bounds")
        policy = InstancePolicy(
            policy=p["policy"],
            slo=Slo(
                ttft_ms=float(p["slo"]["ttft_ms"]),
                tpot_ms=float(p["slo"]["tpot_ms"]),
                percentile=int(p["slo"].get("percentile", 99)),
            ),
            profile=p["profile"],
            bounds=ClockBounds(int(bounds["min_mhz"]), int(bounds["max_mhz"])) if bounds else None,
            base_clock_mhz=p.get("base_clock_mhz"),
            settings=PolicyTuning.model_validate(p.get("energy", {})).policy_settings(),
            token_budget=int(p.get("token_budget", DEFAULT_TOKEN_BUDGET)),
        )
        instance = EngineInstance(
            namespace=item.get("namespace", "default"),
            pod=item["pod"],
            role=item["role"],
            engine=item.get("engine", "vllm"),
            metrics_url=item["metrics_url"],
            gpus=tuple(item["gpus"]),
            service=item.get("service", ""),
            uid=str(item.get("uid", "")),
        )
        desired[instance.key] = (instance, policy)
    return desired


def without_conflicts(desired: Desired, controlled: Collection[str]) -> Desired:
    """One GPU, one instance, in a file too: the instances controlled now first, then file order."""
    ordered = sorted(desired.items(), key=lambda item: item[0] not in controlled)
    instances, refused = claim_gpus(ordered)
    for key, refusal in refused.items():
        log.warning("%s: not controlling it (%s): %s", key, refusal.reason, refusal.detail)
    return instances


class StaticDiscovery:
    def __init__(self, path: Path, poll_s: float = 0.5) -> None:
        self._path = path
        self._poll_s = poll_s

    async def updates(self) -> AsyncIterator[Desired]:
        seen: float | None = None
        last: Desired = {}
        while True:
            try:
                mtime = self._path.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = -1
            if mtime != seen:
                seen = mtime
                parsed = parse_instances(json.loads(self._path.read_text())) if mtime >= 0 else {}
                last = without_conflicts(parsed, last.keys())
                yield last
            await asyncio.sleep(self._poll_s)
