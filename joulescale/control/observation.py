"""The observation types, under the control package's name for its policies.

They are defined in ``joulescale.engines.observation``: the engines layer builds observations
and sits below control, so control imports them from there and never the other way round.
"""

from joulescale.engines.observation import PHASES, DecodeProgress, Observation, Phase, QueuedPrompt

__all__ = ["PHASES", "DecodeProgress", "Observation", "Phase", "QueuedPrompt"]
