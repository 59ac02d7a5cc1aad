"""What a policy is built from: the instance's profile, SLO, bounds and token budget, and the service's tunables."""

from __future__ import annotations

from dataclasses import dataclass, field

from joulescale.batching import DEFAULT_TOKEN_BUDGET
from joulescale.control.clocks import allowed_clocks_mhz
from joulescale.control.policy import ClockBounds, Slo
from joulescale.control.predictor import LatencyPredictor, ProfilePredictor
from joulescale.control.settings import PolicySettings
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
    token_budget: int = DEFAULT_TOKEN_BUDGET
    """The engine's token budget per step (spec.engine.maxBatchedTokens: vLLM
    --max-num-batched-tokens, SGLang --chunked-prefill-size); prefill batches are planned with it."""
    settings: PolicySettings = field(default_factory=PolicySettings)
    """The service's tunables (spec.energy), in groups."""

    def __post_init__(self) -> None:
        if self.slo.ttft_ms <= 0 or self.slo.tpot_ms <= 0:
            raise ValueError("SLO targets must be positive")
        if self.token_budget < 1:
            raise ValueError("the token budget must be positive")
        allowed_clocks_mhz(self.profile.supported_sm_clocks_mhz, self.bounds)

    @property
    def allowed_mhz(self) -> tuple[int, ...]:
        return allowed_clocks_mhz(self.profile.supported_sm_clocks_mhz, self.bounds)

    def offline_predictor(self) -> LatencyPredictor:
        return self.predictor if self.predictor is not None else ProfilePredictor(self.profile)

    @property
    def ttft_budget_s(self) -> float:
        return self.slo.ttft_ms * (1.0 - self.settings.margin) / 1000.0

    @property
    def tpot_budget_s(self) -> float:
        return self.slo.tpot_ms * (1.0 - self.settings.margin) / 1000.0
