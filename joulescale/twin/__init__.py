"""The digital twin: a discrete-event P/D cluster that runs the real clock policies.

``compare`` measures every policy side by side on one trace window (``joulescale twin compare``);
``simulate`` is one run of one cluster and control; docs/twin.md explains the model.
"""

from joulescale.twin.cluster import ClusterConfig, InstanceControl
from joulescale.twin.compare import Comparison, compare
from joulescale.twin.metrics import RunSummary, summarise
from joulescale.twin.oracle import OracleBound, oracle_bound
from joulescale.twin.settings import CompareSettings
from joulescale.twin.simulator import RunResult, simulate
from joulescale.twin.traces import Trace, TraceError, TraceRequest, load_trace, scaled_window, synthetic_trace

__all__ = [
    "ClusterConfig",
    "CompareSettings",
    "Comparison",
    "InstanceControl",
    "OracleBound",
    "RunResult",
    "RunSummary",
    "Trace",
    "TraceError",
    "TraceRequest",
    "compare",
    "load_trace",
    "oracle_bound",
    "scaled_window",
    "simulate",
    "summarise",
    "synthetic_trace",
]
