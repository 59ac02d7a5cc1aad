"""Per-iteration clock control: observations, policies, predictors and the actuation rules.

Used unchanged by the node agent and the digital twin: ``build_controller`` builds the policy
(named in the registry) and its governor for one engine instance; ``ClockGovernor`` applies the actuation rules (docs/policies.md) between its
decisions and the GPUs.
"""

from joulescale.control.biscale import BiScalePolicy
from joulescale.control.clocks import NoAllowedClockError, allowed_clocks_mhz, levels_mhz, snap_up_mhz
from joulescale.control.context import PolicyContext
from joulescale.control.controller import Controller, build_controller
from joulescale.control.fitting import FitError, FittedPredictor, LatencySample, decode_bucket, fit_predictor
from joulescale.control.governor import Actuation, ClockGovernor, group_clock_mhz
from joulescale.control.joulescale_policy import JouleScalePolicy
from joulescale.control.online import CorrectionSettings, OnlineCorrection
from joulescale.control.policy import ClockBounds, ClockDecision, ClockPolicy, DecisionReason, Slo
from joulescale.control.predictor import LatencyPredictor, ProfilePredictor
from joulescale.control.registry import (
    OFF,
    PolicyEntry,
    TwinVariant,
    UnknownPolicyError,
    make_policy,
    policy_entries,
    policy_entry,
    policy_names,
    register,
)
from joulescale.control.settings import (
    BiScaleSettings,
    DecodeSettings,
    GovernorSettings,
    JouleScaleSettings,
    PolicySettings,
    PrefillSettings,
    VoltanaSettings,
)
from joulescale.control.static import StaticPolicy
from joulescale.control.voltana import VoltanaPolicy
from joulescale.engines.observation import PHASES, DecodeProgress, Observation, Phase, QueuedPrompt

__all__ = [
    "OFF",
    "PHASES",
    "Actuation",
    "BiScalePolicy",
    "BiScaleSettings",
    "ClockBounds",
    "ClockDecision",
    "ClockGovernor",
    "ClockPolicy",
    "Controller",
    "CorrectionSettings",
    "DecisionReason",
    "DecodeProgress",
    "DecodeSettings",
    "FitError",
    "FittedPredictor",
    "GovernorSettings",
    "JouleScalePolicy",
    "JouleScaleSettings",
    "LatencyPredictor",
    "LatencySample",
    "NoAllowedClockError",
    "Observation",
    "OnlineCorrection",
    "Phase",
    "PolicyContext",
    "PolicyEntry",
    "PolicySettings",
    "PrefillSettings",
    "ProfilePredictor",
    "QueuedPrompt",
    "Slo",
    "StaticPolicy",
    "TwinVariant",
    "UnknownPolicyError",
    "VoltanaPolicy",
    "VoltanaSettings",
    "allowed_clocks_mhz",
    "build_controller",
    "decode_bucket",
    "fit_predictor",
    "group_clock_mhz",
    "levels_mhz",
    "make_policy",
    "policy_entries",
    "policy_entry",
    "policy_names",
    "register",
    "snap_up_mhz",
]
