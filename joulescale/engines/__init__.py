"""What an engine instance publishes, in one neutral form shared by the agent and the twin.

The agent parses a vLLM or SGLang ``/metrics`` page into an ``EngineSample``; the twin's
simulated engines record the same counters, gauges and histograms, with the engines' own bucket
edges and publication times (``dialects``), into the same type. One builder turns successive
samples into the observations a clock policy sees, so a policy sees the same thing in both.
``model`` holds the one engine scheduler model (chunked prefill, admission, preemption) that the
twin and e2e's simulated engine drive, and ``recorder`` the page such a simulated engine keeps.
"""

from joulescale.engines.dialects import (
    ENGINE_NAMES,
    EngineDialect,
    dialect_for,
    register_dialect,
    registered_dialect,
)
from joulescale.engines.histogram import Histogram, HistogramRecorder
from joulescale.engines.sample import EngineSample

__all__ = [
    "ENGINE_NAMES",
    "EngineDialect",
    "EngineSample",
    "Histogram",
    "HistogramRecorder",
    "dialect_for",
    "register_dialect",
    "registered_dialect",
]
