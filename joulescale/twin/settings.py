"""What one ``joulescale twin compare`` run is asked to do, and the bounds it is checked against.

Every field is checked in ``__post_init__`` against ``joulescale.twin.limits``, so a library
caller is refused like the CLI (whose argument types check the same bounds earlier, naming the
flag). Checks that need the profile or the trace run in ``compare``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from joulescale.control.policy import ClockBounds, Slo
from joulescale.engines.dialects import ENGINE_NAMES
from joulescale.twin import limits
from joulescale.twin.kv_transfer import kv_media
from joulescale.twin.limits import SettingError, bounded_float, bounded_int
from joulescale.twin.policies import policy_names
from joulescale.twin.views import VIEW_NAMES, ViewName

ORACLE = "oracle"
TOPOLOGY_CHOICES: tuple[str, ...] = ("disaggregated", "aggregated", "both")
"""``--topology``: one of the cluster topologies (``twin.cluster.TOPOLOGIES``), or both side by side."""
DEFAULT_POLICIES: tuple[str, ...] = (*policy_names(), ORACLE)


def known_policies() -> tuple[str, ...]:
    """Every name a comparison accepts now: the registry's twin variants and the oracle."""
    return (*policy_names(), ORACLE)
DEFAULT_DURATION_S = 300.0
"""Five simulated minutes (BiScale's window length); keeps ``make demo`` well under 2 minutes."""
@dataclass(frozen=True, slots=True)
class CompareSettings:
    trace: str = "azure-conv"
    load: float = 0.67
    duration_s: float = DEFAULT_DURATION_S
    gpus: int = 16
    profile: str = "h100-sxm-llama-70b-tp4"
    prefill_profile: str | None = None
    """Prefill instances' profile when it differs from ``profile`` (e.g. the TP8 one for long prompts)."""
    slo: Slo = field(default_factory=lambda: Slo(ttft_ms=600.0, tpot_ms=100.0, percentile=99))
    seed: int = 0
    """0 replays the trace from its start; another seed picks a reproducible random window."""
    policies: tuple[str, ...] = DEFAULT_POLICIES
    view: ViewName = "metrics"
    prefill_instances: int | None = None
    """None: the split with the highest static-max capacity."""
    kv_medium: str = "infiniband"
    bounds: ClockBounds | None = None
    scrape_period_s: float = 0.05
    scrape_delay_s: float = 0.01
    engine: str = "vllm"
    """The engine simulated: what its /metrics page holds and when it changes (engines.dialects)."""
    power_limit_watts: float | None = None
    """Board power cap per GPU; None keeps the profile's."""
    clock_settle_s: float | None = None
    """Delay before a new clock takes effect; None keeps the profile's."""
    cache_dir: Path | None = None
    rate: float | Literal["native"] | None = None
    """Replayed rate: None = ``load`` x the static-max capacity; "native" = the trace's own; else req/s."""
    auto_ttft: bool = False
    """Replace ``slo.ttft_ms`` by the tightest target static-max meets with 20 % headroom (feasibility)."""
    auto_tpot: bool = False
    """Replace ``slo.tpot_ms`` likewise."""
    topology: str = "disaggregated"
    """disaggregated (P/D), aggregated (every instance runs both phases), or both (``twin.topology``)."""

    def __post_init__(self) -> None:
        """Every bound of ``joulescale.twin.limits``, so library callers are refused like the CLI."""
        known = known_policies()
        unknown = [p for p in self.policies if p not in known]
        if unknown or not self.policies:
            raise SettingError("policies", f"unknown policies {unknown}; known: {', '.join(known)}")
        twice = sorted({p for p in self.policies if self.policies.count(p) > 1})
        if twice:  # each policy is one run, one table row and one JSON key
            raise SettingError("policies", f"{', '.join(twice)} listed more than once")
        bounded_float("load", self.load, 0.0, limits.MAX_LOAD, low_open=True)
        bounded_float("duration_s", self.duration_s, 0.0, limits.MAX_DURATION_S, low_open=True)
        bounded_int("gpus", self.gpus, 2, limits.MAX_GPUS)
        bounded_float("slo.ttft_ms", self.slo.ttft_ms, 0.0, limits.MAX_SLO_MS, low_open=True)
        bounded_float("slo.tpot_ms", self.slo.tpot_ms, 0.0, limits.MAX_SLO_MS, low_open=True)
        bounded_int("slo.percentile", self.slo.percentile, 1, 100)
        bounded_int("seed", self.seed, 0, limits.MAX_SEED)
        if self.rate is not None and self.rate != "native":
            bounded_float("rate", self.rate, 0.0, limits.MAX_RATE_PER_S, low_open=True)
        if self.prefill_instances is not None:
            bounded_int("prefill_instances", self.prefill_instances, 1, limits.MAX_GPUS)
        if self.bounds is not None:
            bounded_int("bounds.min_mhz", self.bounds.min_mhz, 0, limits.MAX_CLOCK_MHZ)
            bounded_int("bounds.max_mhz", self.bounds.max_mhz, 0, limits.MAX_CLOCK_MHZ)
        bounded_float("scrape_period_s", self.scrape_period_s, limits.MIN_SCRAPE_PERIOD_MS / 1000.0,
                      limits.MAX_PERIOD_MS / 1000.0)
        bounded_float("scrape_delay_s", self.scrape_delay_s, 0.0, limits.MAX_PERIOD_MS / 1000.0)
        if self.power_limit_watts is not None:
            bounded_float("power_limit_watts", self.power_limit_watts, 0.0, limits.MAX_POWER_WATTS, low_open=True)
        if self.clock_settle_s is not None:
            bounded_float("clock_settle_s", self.clock_settle_s, 0.0, limits.MAX_PERIOD_MS / 1000.0)
        if self.kv_medium not in kv_media():
            raise SettingError("kv_medium", f"unknown KV medium {self.kv_medium!r}; known: {', '.join(sorted(kv_media()))}")
        if self.view not in VIEW_NAMES:
            raise SettingError("view", f"unknown view {self.view!r}")
        if self.topology not in TOPOLOGY_CHOICES:
            raise SettingError("topology", f"unknown topology {self.topology!r}; known: {', '.join(TOPOLOGY_CHOICES)}")
        if self.topology == "both" and (self.auto_ttft or self.auto_tpot):
            raise SettingError("topology", "an auto SLO is measured on one cluster, and --topology both compares two "
                                           "at one SLO: give the targets in ms (or run each topology with auto)")
        if self.topology != "disaggregated" and self.view != "metrics":
            raise SettingError("view", "the aggregated topology runs the metrics view only")
        if self.topology == "aggregated" and (self.prefill_profile is not None or self.prefill_instances is not None):
            raise SettingError("topology", "an aggregated cluster has no prefill instances: drop --prefill-profile "
                                           "and --prefill-instances")
        if self.engine not in ENGINE_NAMES:
            raise SettingError("engine", f"unknown engine {self.engine!r}; known: {', '.join(ENGINE_NAMES)}")
