"""Whole comparisons under generated settings: what every comparison must satisfy, whatever
the trace, window, load, SLO percentile or cluster."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from joulescale.control.policy import Slo
from joulescale.twin.compare import NoFeasibleRateError, compare
from joulescale.twin.limits import SettingError
from joulescale.twin.report import BASELINE, slo_holding, to_json
from joulescale.twin.settings import CompareSettings


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=st.sampled_from(("azure-conv", "azure-code")), seed=st.integers(0, 10_000),
       duration=st.floats(8.0, 20.0), load=st.floats(0.3, 1.5), percentile=st.sampled_from((50, 90, 99)),
       gpus=st.sampled_from((8, 12)), medium=st.sampled_from(("nvlink", "infiniband", "ethernet-100g")))
def test_any_comparison_measures_one_window_above_its_oracle_and_reports_strict_json(
        trace: str, seed: int, duration: float, load: float, percentile: int, gpus: int, medium: str) -> None:
    chosen = CompareSettings(trace=trace, seed=seed, duration_s=duration, load=load, gpus=gpus, kv_medium=medium,
                             slo=Slo(600.0, 100.0, percentile), prefill_instances=1)
    try:
        result = compare(chosen)
    except SettingError as error:
        assume(error.setting != "duration_s")  # a quiet window: refused by design
        raise
    except NoFeasibleRateError as error:  # no rate meets the SLO: the reason instead of a run
        why = error.feasibility
        json.dumps(why.to_json(), allow_nan=False)
        assert why.requests >= 5 * 100 // (100 - percentile)  # measured on the percentile's window
        more_gpus = next(r for r in why.remedies if r.name == "more GPUs")
        assert more_gpus.helps == why.floor_meets_slo  # capacity helps only requests that meet it alone
        return
    assert result.oracle is not None
    horizon = max(run.end_s for run in result.runs.values())
    for name, summary in result.summaries.items():
        assert summary.requests == len(result.requests), name
        assert summary.finished == summary.requests, name  # every run drains its window
        assert summary.duration_s == horizon, name
        assert result.oracle.prefill_j <= summary.prefill.total_j, name
        assert result.oracle.decode_j <= summary.decode.total_j, name
        assert 0.0 <= summary.slo_attainment <= 1.0, name
    assert result.capacity is not None
    assert result.rate_scale == chosen.load * result.capacity.rate_scale
    verdict = slo_holding(result)
    assert verdict is not None
    assert sorted(verdict[0] + verdict[1]) == sorted(n for n in result.summaries if n != BASELINE)
    json.dumps(to_json(result), allow_nan=False)  # strict JSON: no NaN or Infinity anywhere
