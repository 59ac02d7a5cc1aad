"""The JouleScale operator: reconciles EnergyAwareLLMServices into prefill/decode Deployments."""

from joulescale_operator.reconcile import Reconciler
from joulescale_operator.render import render_children
from joulescale_operator.settings import OperatorSettings
from joulescale_operator.status import reduce_status

__all__ = ["OperatorSettings", "Reconciler", "reduce_status", "render_children"]
