"""Engine /metrics pages -> observations: the text parser, the per-engine adapters, the deltas."""

from joulescale_agent.engines.adapters import ADAPTERS, EngineAdapter, EngineSample, adapter_for
from joulescale_agent.engines.observe import ObservationBuilder
from joulescale_agent.engines.promtext import Histogram, MetricsPage, parse_page

__all__ = [
    "ADAPTERS",
    "EngineAdapter",
    "EngineSample",
    "Histogram",
    "MetricsPage",
    "ObservationBuilder",
    "adapter_for",
    "parse_page",
]
