"""Engine /metrics pages -> observations: the text parser, the per-engine adapters, the bounded
reader that runs them off the event loop, the deltas."""

from joulescale_agent.engines.adapters import ADAPTERS, EngineAdapter, EngineSample, adapter_for
from joulescale_agent.engines.observe import ObservationBuilder
from joulescale_agent.engines.promlabels import ParseLimits
from joulescale_agent.engines.promtext import Histogram, MetricsPage, parse_page
from joulescale_agent.engines.reader import PageRead, PageReader

__all__ = [
    "ADAPTERS",
    "EngineAdapter",
    "EngineSample",
    "Histogram",
    "MetricsPage",
    "ObservationBuilder",
    "PageRead",
    "PageReader",
    "ParseLimits",
    "adapter_for",
    "parse_page",
]
