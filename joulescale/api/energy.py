"""spec.energy's policy settings: the core's tunables (joulescale.control.settings) on the wire.

One model per settings group, with units in the names; every default is the core's, so a
service that sets nothing runs the shipped numbers. Ranges are checked here and in the CRD, and
``to_core`` gives the agent and the twin the same ``PolicySettings``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from joulescale.api.base import ApiModel
from joulescale.control.online import CorrectionSettings
from joulescale.control.settings import (
    BiScaleSettings,
    DecodeSettings,
    GovernorSettings,
    JouleScaleSettings,
    PolicySettings,
    PrefillSettings,
    VoltanaSettings,
)

_DECODE, _PREFILL, _CORRECTION = DecodeSettings(), PrefillSettings(), CorrectionSettings()
_GOVERNOR, _BISCALE, _JOULESCALE, _VOLTANA = GovernorSettings(), BiScaleSettings(), JouleScaleSettings(), VoltanaSettings()
_DEFAULTS = PolicySettings()


class GovernorTuning(ApiModel):
    """The actuation rules between a policy's decisions and the GPUs."""

    min_hold_ms: float = Field(
        default=_GOVERNOR.min_hold_ms, ge=0, le=60_000,
        description="A new clock is held at least this long, in milliseconds, unless an urgent raise overrides it.",
    )

    def to_core(self) -> GovernorSettings:
        return GovernorSettings(min_hold_ms=self.min_hold_ms)


class DecodeTuning(ApiModel):
    """Decode rules the online policies share."""

    kv_guard_usage: float = Field(
        default=_DECODE.kv_guard_usage, ge=0.01, le=1,
        description="KV-cache usage (fraction) at or above which decode runs at the top clock to free KV.",
    )
    slack_spend_tokens: int = Field(
        default=_DECODE.slack_spend_tokens, ge=1, le=4096,
        description="Banked decode slack is spread over this many coming tokens.",
    )
    slack_bank_cap_tokens: float = Field(
        default=_DECODE.slack_bank_cap_tokens, ge=0, le=1000,
        description="Most surplus slack the bank holds, in token budgets' worth (0: only the deficit).",
    )
    slack_bank_decay: float = Field(
        default=_DECODE.slack_bank_decay, ge=0.01, le=1,
        description="Per iteration, banked slack decays by this factor.",
    )

    def to_core(self) -> DecodeSettings:
        return DecodeSettings(self.kv_guard_usage, self.slack_spend_tokens, self.slack_bank_cap_tokens,
                              self.slack_bank_decay)


class PrefillTuning(ApiModel):
    """Prefill planning shared by the MPC policies."""

    default_prompt_tokens: int = Field(
        default=_PREFILL.default_prompt_tokens, ge=1, le=10_000_000,
        description="Prompt length, in tokens, assumed before any is observed.",
    )
    mpc_horizon: int = Field(
        default=_PREFILL.mpc_horizon, ge=1, le=64, description="Batches the prefill MPC plans ahead."
    )
    misprediction_tolerance: float = Field(
        default=_PREFILL.misprediction_tolerance, ge=0, le=10,
        description="An iteration slower than predicted by more than this share triggers the guard.",
    )

    def to_core(self) -> PrefillSettings:
        return PrefillSettings(self.default_prompt_tokens, self.mpc_horizon, self.misprediction_tolerance)


class CorrectionTuning(ApiModel):
    """Online latency correction (joulescale): learns how much slower or faster the GPU runs than its profile."""

    alpha: float = Field(default=_CORRECTION.alpha, ge=0.01, le=1, description="EWMA weight of one sample.")
    sample_ratio_limit: float = Field(
        default=_CORRECTION.sample_ratio_limit, ge=1, le=100,
        description="One sample counts as at most this factor away from the current estimate.",
    )
    factor_limit: float = Field(
        default=_CORRECTION.factor_limit, ge=1, le=100, description="The correction stays in [1/limit, limit]."
    )
    max_age_seconds: float = Field(
        default=_CORRECTION.max_age_s, ge=0.01, le=3600, description="Samples older than this many seconds are ignored."
    )
    bucket_mhz: float = Field(
        default=_CORRECTION.bucket_mhz, alias="bucketMHz", ge=1, le=5000, description="Width of a clock bucket, in MHz."
    )
    bucket_min_samples: int = Field(
        default=_CORRECTION.bucket_min_samples, ge=1, le=100_000,
        description="Samples a bucket needs before its own factor replaces the phase's.",
    )

    def to_core(self) -> CorrectionSettings:
        return CorrectionSettings(self.alpha, self.sample_ratio_limit, self.factor_limit, self.max_age_seconds,
                                  self.bucket_mhz, self.bucket_min_samples)


class BiScaleTuning(ApiModel):
    """BiScale's own settings."""

    mpc_levels: int = Field(default=_BISCALE.mpc_levels, ge=1, le=64, description="Clock levels of the prefill MPC.")

    def to_core(self) -> BiScaleSettings:
        return BiScaleSettings(self.mpc_levels)


class JouleScaleTuning(ApiModel):
    """JouleScale's own settings."""

    mpc_levels: int = Field(
        default=_JOULESCALE.mpc_levels, ge=1, le=64, description="Clock levels of the prefill MPC."
    )
    prefill_idle_objective: bool = Field(
        default=_JOULESCALE.prefill_idle_objective,
        description="Charge the prefill MPC only the power above idle.",
    )
    prefill_flat_tolerance: float = Field(
        default=_JOULESCALE.prefill_flat_tolerance, ge=0, le=1,
        description="The steady prefill clock is the highest whose energy stays within this share of the least.",
    )
    prompt_quantile: float = Field(
        default=_JOULESCALE.prompt_quantile, ge=0.01, le=1,
        description="Quantile of recent prompt lengths the queue is planned with.",
    )
    ready_quantile: float = Field(
        default=_JOULESCALE.ready_quantile, ge=0.01, le=1,
        description="Between batches, prefill waits at the clock that serves a lone prompt of this quantile in time.",
    )
    kv_soft_usage: float = Field(
        default=_JOULESCALE.kv_soft_usage, ge=0.01, le=1,
        description="KV usage (fraction) from which decode tightens its budget towards the hard guard.",
    )
    kv_tight_share: float = Field(
        default=_JOULESCALE.kv_tight_share, ge=0.01, le=1,
        description="At the hard guard the decode budget is this share of the TPOT budget.",
    )
    decode_idle_window_seconds: float | None = Field(
        default=_JOULESCALE.decode_idle_window_s, ge=0.001, le=3600,
        description="A decode instance idle within this many seconds keeps at least its least-energy clock; unset: off.",
    )

    def to_core(self) -> JouleScaleSettings:
        return JouleScaleSettings(self.mpc_levels, self.prefill_idle_objective, self.prefill_flat_tolerance,
                                  self.prompt_quantile, self.ready_quantile, self.kv_soft_usage, self.kv_tight_share,
                                  self.decode_idle_window_seconds)


class VoltanaTuning(ApiModel):
    """VoltanaLLM's EcoFreq settings."""

    clocks_mhz: list[Annotated[int, Field(ge=1, le=10_000)]] | None = Field(
        default=None, alias="clocksMHz", min_length=1, max_length=64,
        description="The short clock list, in MHz; unset: 5 levels over [0.7 f_max, f_max].",
    )
    idle_seconds: float = Field(
        default=_VOLTANA.idle_s, ge=0, le=3600,
        description="After this many seconds without work, the lowest clock.",
    )
    max_tokens_per_second: float | None = Field(
        default=_VOLTANA.max_tokens_per_s, ge=1, le=1e9,
        description="Token rate above which EcoFreq runs f_max; unset: off.",
    )

    def to_core(self) -> VoltanaSettings:
        clocks = None if self.clocks_mhz is None else tuple(self.clocks_mhz)
        return VoltanaSettings(clocks, self.idle_seconds, self.max_tokens_per_second)


def _group(model: type[ApiModel], description: str) -> Any:
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})


class PolicyTuning(ApiModel):
    """The settings of spec.energy that reach the policies (a mixin of EnergySpec)."""

    margin: float = Field(
        default=_DEFAULTS.margin, ge=0, le=0.9,
        description="Safety margin (fraction): the policies aim at the SLO x (1 - margin).",
    )
    governor: GovernorTuning = _group(GovernorTuning, "Actuation rules.")
    decode: DecodeTuning = _group(DecodeTuning, "Decode rules the online policies share.")
    prefill: PrefillTuning = _group(PrefillTuning, "Prefill planning.")
    correction: CorrectionTuning = _group(CorrectionTuning, "Online latency correction.")
    biscale: BiScaleTuning = _group(BiScaleTuning, "BiScale's settings.")
    joulescale: JouleScaleTuning = _group(JouleScaleTuning, "JouleScale's settings.")
    voltana: VoltanaTuning = _group(VoltanaTuning, "VoltanaLLM's settings.")

    def policy_settings(self) -> PolicySettings:
        """The core's settings, as the agent and the twin hand them to ``build_controller``."""
        return PolicySettings(
            margin=self.margin, decode=self.decode.to_core(), prefill=self.prefill.to_core(),
            correction=self.correction.to_core(), governor=self.governor.to_core(),
            biscale=self.biscale.to_core(), joulescale=self.joulescale.to_core(), voltana=self.voltana.to_core(),
        )
