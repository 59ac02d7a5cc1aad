"""Per-iteration clock control: observations, policies, predictors and the actuation rules.

Used unchanged by the node agent and the digital twin: ``make_policy(name, context)`` builds
a policy for one engine instance; ``ClockGovernor`` applies the actuation rules (docs/policies.md) between its
decisions and the GPUs.
"""

from joulescale.control.biscale import BiScalePolicy
from joulescale.control.clocks import NoAllowedClockError, allowed_clocks_mhz, levels_mhz, snap_up_mhz
from joulescale.control.context import PolicyContext
from joulescale.control.factory import POLICY_NAMES, UnknownPolicyError, make_policy
from joulescale.control.fitting import FitError, FittedPredictor, LatencySample, decode_bucket, fit_predictor
from joulescale.control.governor import Actuation, ClockGovernor, group_clock_mhz
from joulescale.control.joulescale_policy import JouleScalePolicy
from joulescale.control.observation import PHASES, DecodeProgress, Observation, Phase, QueuedPrompt
from joulescale.control.online import CorrectionSettings, OnlineCorrection
from joulescale.control.policy import ClockBounds, ClockDecision, ClockPolicy, DecisionReason, Slo
from joulescale.control.predictor import LatencyPredictor, ProfilePredictor
from joulescale.control.static import StaticPolicy
from joulescale.control.voltana import VoltanaPolicy

__all__ = [
    "PHASES",
    "POLICY_NAMES",
    "Actuation",
    "BiScalePolicy",
    "ClockBounds",
    "ClockDecision",
    "ClockGovernor",
    "ClockPolicy",
    "CorrectionSettings",
    "DecisionReason",
    "DecodeProgress",
    "FitError",
    "FittedPredictor",
    "JouleScalePolicy",
    "LatencyPredictor",
    "LatencySample",
    "NoAllowedClockError",
    "Observation",
    "OnlineCorrection",
    "Phase",
    "PolicyContext",
    "ProfilePredictor",
    "QueuedPrompt",
    "Slo",
    "StaticPolicy",
    "UnknownPolicyError",
    "VoltanaPolicy",
    "allowed_clocks_mhz",
    "decode_bucket",
    "fit_predictor",
    "group_clock_mhz",
    "levels_mhz",
    "make_policy",
    "snap_up_mhz",
]
