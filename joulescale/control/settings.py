"""The policies' tunables, in typed groups with units: one value per service, set in spec.energy.

Every default here is the project's choice (docs/policies.md says why); the API's models
(joulescale.api.energy) take their defaults from these classes, so a service that sets nothing
runs exactly these numbers in the agent and in the twin. Each group checks its own ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from joulescale.control.online import CorrectionSettings


def _fraction(name: str, value: float, *, closed: bool = True) -> None:
    ok = 0 < value <= 1 if closed else 0 <= value < 1
    if not ok:
        raise ValueError(f"{name} must be in {'(0, 1]' if closed else '[0, 1)'}, got {value}")


@dataclass(frozen=True, slots=True)
class DecodeSettings:
    """Decode rules every online policy shares (KV guard) and the metrics-only slack bank."""

    kv_guard_usage: float = 0.9
    """KV-cache usage (fraction) at or above which decode runs at the top clock to free KV."""
    slack_spend_tokens: int = 8
    """Banked decode slack is spread over this many coming tokens."""
    slack_bank_cap_tokens: float = 0.0
    """Metrics-only view: the bank holds at most this many budgets' worth of surplus slack. 0
    keeps only the deficit (slow iterations are caught up): in the twin a surplus bank made the
    clock oscillate and cost decode energy (power is convex in the clock)."""
    slack_bank_decay: float = 0.97
    """Metrics-only view: per iteration, banked slack decays by this factor (requests turn over)."""

    def __post_init__(self) -> None:
        _fraction("decode.kv_guard_usage", self.kv_guard_usage)
        if self.slack_spend_tokens < 1:
            raise ValueError("decode.slack_spend_tokens must be at least 1")
        if self.slack_bank_cap_tokens < 0:
            raise ValueError("decode.slack_bank_cap_tokens must not be negative")
        _fraction("decode.slack_bank_decay", self.slack_bank_decay)


@dataclass(frozen=True, slots=True)
class PrefillSettings:
    """Prefill planning shared by the MPC policies (biscale, joulescale) and voltana's estimate."""

    default_prompt_tokens: int = 1024
    """Prompt length (tokens) assumed before any is observed (metrics-only view)."""
    mpc_horizon: int = 8
    """Batches the prefill MPC plans ahead."""
    misprediction_tolerance: float = 0.1
    """An iteration slower than predicted by more than this share triggers the guard."""

    def __post_init__(self) -> None:
        if self.default_prompt_tokens < 1:
            raise ValueError("prefill.default_prompt_tokens must be at least 1")
        if self.mpc_horizon < 1:
            raise ValueError("prefill.mpc_horizon must be at least 1")
        if self.misprediction_tolerance < 0:
            raise ValueError("prefill.misprediction_tolerance must not be negative")


@dataclass(frozen=True, slots=True)
class BiScaleSettings:
    mpc_levels: int = 7
    """Clock levels of BiScale's prefill MPC."""

    def __post_init__(self) -> None:
        if self.mpc_levels < 1:
            raise ValueError("biscale.mpc_levels must be at least 1")


@dataclass(frozen=True, slots=True)
class JouleScaleSettings:
    mpc_levels: int = 8
    """Clock levels of JouleScale's prefill MPC (over its narrower, energy-sensible span)."""
    prefill_idle_objective: bool = False
    """Charge the prefill MPC only the power above idle (finishing early leaves the GPUs idling).
    Off: in the twin at 0.67 load it cost prefill energy, since the prefill instances rarely idle
    and slower batches only grow the queue."""
    prefill_flat_tolerance: float = 0.005
    """The steady prefill clock is the highest whose energy above idle stays within this share of
    the least for every batch size (prefill_clocks.py): the floor while requests wait."""
    prompt_quantile: float = 0.95
    """The metrics-only queue and the anticipated arrival are planned with this quantile of recent
    prompt lengths (a mean hides the long prompts that miss TTFT)."""
    ready_quantile: float = 0.995
    """Between batches prefill waits at the clock that serves a lone prompt of this quantile of
    recent prompt lengths within TTFT (idle power does not depend on the clock)."""
    kv_soft_usage: float = 0.7
    """Decode tightens its latency budget linearly from this KV usage up to the hard guard
    (decode.kv_guard_usage), so the batch drains before the guard forces f_max."""
    kv_tight_share: float = 0.5
    """At the hard guard the tightened decode budget is this share of the TPOT budget."""
    decode_idle_window_s: float | None = None
    """A decode instance idle within this long (seconds) is not continuously busy, so its clock
    stays at or above the batch's least-energy clock (above idle power). None: off."""

    def __post_init__(self) -> None:
        if self.mpc_levels < 1:
            raise ValueError("joulescale.mpc_levels must be at least 1")
        if self.prefill_flat_tolerance < 0:
            raise ValueError("joulescale.prefill_flat_tolerance must not be negative")
        _fraction("joulescale.prompt_quantile", self.prompt_quantile)
        _fraction("joulescale.ready_quantile", self.ready_quantile)
        _fraction("joulescale.kv_soft_usage", self.kv_soft_usage)
        _fraction("joulescale.kv_tight_share", self.kv_tight_share)
        if self.decode_idle_window_s is not None and self.decode_idle_window_s <= 0:
            raise ValueError("joulescale.decode_idle_window_s must be positive")


@dataclass(frozen=True, slots=True)
class VoltanaSettings:
    clocks_mhz: tuple[int, ...] | None = None
    """EcoFreq's short clock list (MHz); None: 5 levels over [0.7 f_max, f_max]."""
    idle_s: float = 5.0
    """EcoFreq drops to the lowest clock after this many seconds without work."""
    max_tokens_per_s: float | None = None
    """EcoFreq's rate threshold (tokens per second) above which it runs f_max; None: off."""

    def __post_init__(self) -> None:
        if self.clocks_mhz is not None and any(mhz <= 0 for mhz in self.clocks_mhz):
            raise ValueError("voltana.clocks_mhz must hold positive clocks")
        if self.idle_s < 0:
            raise ValueError("voltana.idle_s must not be negative")
        if self.max_tokens_per_s is not None and self.max_tokens_per_s <= 0:
            raise ValueError("voltana.max_tokens_per_s must be positive")


@dataclass(frozen=True, slots=True)
class GovernorSettings:
    """The actuation rules between a policy and the GPUs (docs/policies.md, "Actuation")."""

    min_hold_ms: float = 100.0
    """A new clock is held at least this long (milliseconds) unless an urgent raise overrides it."""

    def __post_init__(self) -> None:
        if self.min_hold_ms < 0:
            raise ValueError("governor.min_hold_ms must not be negative")

    @property
    def min_hold_s(self) -> float:
        return self.min_hold_ms / 1000.0


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """All tunables of one service: shared groups plus one group per policy that has its own."""

    margin: float = 0.1
    """Safety margin (fraction): policies aim at SLO x (1 - margin)."""
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    prefill: PrefillSettings = field(default_factory=PrefillSettings)
    correction: CorrectionSettings = field(default_factory=CorrectionSettings)
    governor: GovernorSettings = field(default_factory=GovernorSettings)
    biscale: BiScaleSettings = field(default_factory=BiScaleSettings)
    joulescale: JouleScaleSettings = field(default_factory=JouleScaleSettings)
    voltana: VoltanaSettings = field(default_factory=VoltanaSettings)

    def __post_init__(self) -> None:
        _fraction("margin", self.margin, closed=False)
