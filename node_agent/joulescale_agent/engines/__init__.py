"""Engine /metrics pages -> EngineSamples: the text parser, the per-engine adapters and the
bounded reader that runs them off the event loop (the samples' type and the builder of
observations are the core's, ``joulescale.engines``)."""

from joulescale_agent.engines.adapters import ADAPTERS, EngineAdapter, adapter_for, register_adapter
from joulescale_agent.engines.promlabels import ParseLimits
from joulescale_agent.engines.promtext import MetricsPage, parse_page
from joulescale_agent.engines.reader import PageRead, PageReader

__all__ = [
    "ADAPTERS",
    "EngineAdapter",
    "MetricsPage",
    "PageRead",
    "PageReader",
    "ParseLimits",
    "adapter_for",
    "parse_page",
    "register_adapter",
]
