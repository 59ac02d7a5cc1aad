"""What the agent controls (an engine instance and its GPUs) and how (its policy settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.policy import ClockBounds, Slo
from joulescale.control.settings import PolicySettings
from joulescale.engines.observation import Phase
from joulescale_agent.events import PodRef


@dataclass(frozen=True, slots=True)
class EngineInstance:
    """One engine pod on this node; ``gpus`` are the UUIDs of its tensor-parallel group."""

    namespace: str
    pod: str
    role: Phase
    engine: str
    """Metrics dialect: a name of joulescale.engines.dialects with an adapter ("vllm", "sglang")."""
    metrics_url: str
    gpus: tuple[str, ...]
    service: str = ""
    uid: str = ""
    """The pod's UID when discovery knows it ("" from a static instances file)."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod}"

    @property
    def pod_ref(self) -> PodRef:
        return PodRef(self.namespace, self.pod, self.uid or None)

    @property
    def labels(self) -> tuple[str, str, str, str]:
        """The values of the exporter's POD_LABELS (namespace, service, pod, role)."""
        return (self.namespace, self.service, self.pod, self.role)


@dataclass(frozen=True, slots=True)
class InstancePolicy:
    """The service's wishes for one instance: ``spec.energy`` (policy and settings), ``spec.slo``,
    the engine's token budget and the planned base clock. A change reaches the running loop
    (``InstanceLoop.update_policy`` rebuilds the controller)."""

    policy: str
    """A name of the policy registry (joulescale.control.registry), or off."""
    slo: Slo
    profile: str
    """Name of the GPU x model profile (joulescale.profiles) the policy predicts with."""
    bounds: ClockBounds | None = None
    base_clock_mhz: int | None = None
    settings: PolicySettings = field(default_factory=PolicySettings)
    """spec.energy's tunables."""
    token_budget: int = DEFAULT_TOKEN_BUDGET
    """spec.engine.maxBatchedTokens: the budget the operator renders into the engine's args."""


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """Timing of the per-instance loop; every field in seconds or hertz."""

    scrape_hz: float = 20.0
    """Scrapes (and decisions) per second per instance."""
    scrape_timeout_s: float = 0.2
    """A scrape slower than this counts as a failure."""
    stale_after_s: float = 1.0
    """Metrics older than this release the instance's locks (fail-safe)."""
    readback_after_s: float = 0.2
    """Wait this long after a clock change before checking the read-back (settle time + margin)."""
    telemetry_every_s: float = 0.5
    """Power and energy are read this often (NVML updates them every 20-100 ms)."""
    parse_budget_s: float = 0.1
    """Reading one page (decode, parse, adapt; off the event loop) may take this long; a page
    over budget counts as unreadable. A real 40 KB page takes about 0.5 ms."""
    readback_retries: int = 2
    """A read-back that disagrees with the lock re-applies the clock this many times (each after
    ``readback_after_s``) before the group's clocks are released and the mismatch reported."""
    relock_backoff_s: float = 1.0
    """After a fail-safe release (stale or unreadable metrics, read-back mismatch, GPU error) no
    clock is locked again for this long, so that no input flaps clocks faster than the hold."""
    relock_backoff_max_s: float = 30.0
    """The back-off doubles for each release that comes within this long of the last one's end."""
    hook_dir: str | None = None
    """The engine hook's socket directory (hostPath shared with the engine pods); None: no hook,
    every instance in the metrics view."""
    hook_stale_after_s: float = 0.5
    """A hook silent this long while the page shows the engine working: back to the metrics view."""

    @property
    def period_s(self) -> float:
        return 1.0 / self.scrape_hz
