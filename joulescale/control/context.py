"""What a policy is built from: the instance's profile, its SLO and bounds, and tunables."""

from __future__ import annotations

from dataclasses import dataclass, field

from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.clocks import allowed_clocks_mhz
from joulescale.control.online import CorrectionSettings
from joulescale.control.policy import ClockBounds, Slo
from joulescale.control.predictor import LatencyPredictor, ProfilePredictor
from joulescale.profiles import GpuProfile


@dataclass(frozen=True)
class PolicyContext:
    """Everything a policy needs besides observations. Tunables are policy choices, not hardware."""

    profile: GpuProfile
    slo: Slo
    bounds: ClockBounds | None = None
    """The service's clock range (spec.energy.clocks); None: the device's whole range."""
    static_clock_mhz: int | None = None
    """The static policy's clock; None: the top allowed clock (static-max)."""
    predictor: LatencyPredictor | None = None
    """Offline predictor; None: the profile's physics."""
    margin: float = 0.1
    """Safety margin: policies aim at SLO x (1 - margin)."""
    kv_guard_usage: float = 0.9
    """KV-cache usage at or above which decode runs at the top clock to free KV (3.1)."""
    max_batch_tokens: int = DEFAULT_TOKEN_BUDGET
    """The engine's token budget per prefill iteration (vLLM --max-num-batched-tokens)."""
    default_prompt_tokens: int = 1024
    """Prompt length assumed before any is observed (metrics-only view)."""
    mpc_horizon: int = 8
    """Batches the prefill MPC plans ahead (3.2)."""
    mpc_levels: int = 7
    """Clock levels of BiScale's prefill MPC (3.2)."""
    joulescale_mpc_levels: int = 8
    """Clock levels of JouleScale's prefill MPC (over its narrower, energy-sensible span)."""
    misprediction_tolerance: float = 0.1
    """An iteration slower than predicted by more than this share triggers the guard (3.2)."""
    slack_spend_tokens: int = 8
    """Banked decode slack is spread over this many coming tokens."""
    slack_bank_cap_tokens: float = 0.0
    """Metrics-only view: the bank holds at most this many budgets' worth of surplus slack. 0
    keeps only the deficit (slow iterations are caught up): in the twin a surplus bank made the
    clock oscillate and cost decode energy (power is convex in the clock)."""
    slack_bank_decay: float = 0.97
    """Metrics-only view: per iteration, banked slack decays by this factor (requests turn over)."""
    joulescale_prefill_idle_objective: bool = False
    """Charge JouleScale's prefill MPC only the power above idle (finishing early leaves the GPUs
    idling). Off: in the twin at 0.67 load it cost prefill energy, since the prefill instances
    rarely idle and slower batches only grow the queue."""
    joulescale_prefill_flat_tolerance: float = 0.005
    """JouleScale's steady prefill clock is the highest whose energy above idle stays within this
    share of the least for every batch size (prefill_clocks.py): the floor while requests wait."""
    joulescale_prompt_quantile: float = 0.95
    """JouleScale plans the metrics-only queue and the anticipated arrival with this quantile of
    recent prompt lengths (a mean hides the long prompts that miss TTFT)."""
    joulescale_ready_quantile: float = 0.995
    """Between batches JouleScale's prefill waits at the clock that serves a lone prompt of this
    quantile of recent prompt lengths within TTFT (idle power does not depend on the clock)."""
    joulescale_kv_soft_usage: float = 0.7
    """JouleScale's decode tightens its latency budget linearly from this KV usage up to the hard
    guard (kv_guard_usage), so the batch drains before the guard forces f_max: slower steps grow
    the batch and its KV (continuous batching), and f_max bursts cost more than a steady rise."""
    joulescale_kv_tight_share: float = 0.5
    """At the hard guard the tightened decode budget is this share of the TPOT budget."""
    decode_idle_window_s: float | None = None
    """JouleScale: a decode instance idle within this long is not continuously busy, so its
    clock stays at or above the batch's least-energy clock (above idle power)."""
    voltana_clocks_mhz: tuple[int, ...] | None = None
    """EcoFreq's short clock list; None: 5 levels over [0.7 f_max, f_max] (VoltanaLLM's A100 span)."""
    voltana_idle_s: float = 5.0
    """EcoFreq drops to the lowest clock after this long without work."""
    voltana_max_tokens_per_s: float | None = None
    """EcoFreq's rate threshold (tokens per second) above which it runs f_max; None: off."""
    correction: CorrectionSettings = field(default_factory=CorrectionSettings)

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 1:
            raise ValueError("margin must be in [0, 1)")
        if self.slo.ttft_ms <= 0 or self.slo.tpot_ms <= 0:
            raise ValueError("SLO targets must be positive")
        if self.mpc_horizon < 1 or self.mpc_levels < 1 or self.joulescale_mpc_levels < 1:
            raise ValueError("mpc_horizon and MPC levels must be at least 1")
        if self.max_batch_tokens < 1 or self.default_prompt_tokens < 1:
            raise ValueError("token budgets must be positive")
        if self.joulescale_prefill_flat_tolerance < 0:
            raise ValueError("joulescale_prefill_flat_tolerance must not be negative")
        if not (0 < self.joulescale_prompt_quantile <= 1 and 0 < self.joulescale_ready_quantile <= 1):
            raise ValueError("prompt quantiles must be in (0, 1]")
        if self.slack_spend_tokens < 1:
            raise ValueError("slack_spend_tokens must be at least 1")
        allowed_clocks_mhz(self.profile.supported_sm_clocks_mhz, self.bounds)

    @property
    def allowed_mhz(self) -> tuple[int, ...]:
        return allowed_clocks_mhz(self.profile.supported_sm_clocks_mhz, self.bounds)

    def offline_predictor(self) -> LatencyPredictor:
        return self.predictor if self.predictor is not None else ProfilePredictor(self.profile)

    @property
    def ttft_budget_s(self) -> float:
        return self.slo.ttft_ms * (1.0 - self.margin) / 1000.0

    @property
    def tpot_budget_s(self) -> float:
        return self.slo.tpot_ms * (1.0 - self.margin) / 1000.0
