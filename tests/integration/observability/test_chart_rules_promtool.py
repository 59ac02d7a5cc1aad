"""The chart's SLO attainment alerts, rendered by the real helm client with targets that fall
between bucket edges of vLLM's histograms, run under ``promtool test rules``: the attainment is
interpolated inside the bucket that holds the target (histogram_fraction), the value the
operator's status.energy reports (``joulescale.engines.bucket_estimates``)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness import provision
from joulescale.engines.bucket_estimates import share_within
from joulescale.engines.dialects import VLLM_ITL_EDGES_S

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[3] / "helm" / "joulescale"
TPOT_TARGET_S = 0.02  # between vLLM's 10 and 25 ms inter-token buckets
ITL = "vllm:inter_token_latency_seconds_bucket"
# Per minute, cumulative: a "slow" service with 1 of 10 token gaps under 10 ms and 9 in (10, 25]
# ms; a "fast" one with 19 of 20 under 10 ms and one beyond 80 ms (+Inf).
PER_MINUTE = {"slow": {0.01: 1, 0.025: 10, math.inf: 10}, "fast": {0.01: 19, 0.025: 19, math.inf: 20}}


def _rendered_groups(out: Path) -> list[dict[str, Any]]:
    helm = provision.ensure_binaries(["helm"])["helm"]
    argv = [str(helm), "template", "js", str(CHART), "-n", "joulescale-system",
            "--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
            "--set-json", f"metrics.prometheusRule.tpotTargetSeconds={TPOT_TARGET_S}"]
    text = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rule = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "PrometheusRule")
    return list(rule["spec"]["groups"])


def _series(service: str) -> list[dict[str, str]]:
    counts = PER_MINUTE[service]
    total = counts[math.inf]
    rows = []
    for le in VLLM_ITL_EDGES_S:
        per_minute = max((n for edge, n in counts.items() if edge <= le), default=0)
        rows.append((repr(le), per_minute))
    rows.append(("+Inf", total))
    return [{"series": f'{{__name__="{ITL}", namespace="demo", service="{service}", le="{le}"}}',
             "values": f"0+{n}x30"} for le, n in rows]


def expected_share(service: str) -> float:
    counts = PER_MINUTE[service]
    total = counts[math.inf]
    buckets = [(le, max((n for e, n in counts.items() if e <= le), default=0)) for le in VLLM_ITL_EDGES_S]
    share = share_within([*buckets, (float("inf"), total)], TPOT_TARGET_S)
    assert share is not None
    return share


def test_the_tpot_alert_interpolates_a_target_between_vllm_buckets(tmp_path: Path) -> None:
    groups = _rendered_groups(tmp_path)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    alert = next(r for g in groups for r in g["rules"] if r.get("alert") == "JouleScaleTpotSloAttainmentLow")
    attainment, threshold = alert["expr"].rsplit("<", 1)
    slow, fast = expected_share("slow"), expected_share("fast")
    assert slow == pytest.approx(0.1 + 0.9 * 10 / 15)  # 0.7: the old le="0.01"-style count said 0.1
    assert fast == pytest.approx(0.95)
    assert slow < float(threshold) < fast
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": _series("slow") + _series("fast"),
            "promql_expr_test": [{
                "expr": f"round({attainment.strip()}, 0.0001)",  # rate()'s float noise
                "eval_time": "20m",
                "exp_samples": [{"labels": f'{{namespace="demo", service="{s}"}}', "value": v}
                                for s, v in (("fast", round(fast, 4)), ("slow", round(slow, 4)))],
            }],
            "alert_rule_test": [{
                "eval_time": "20m",
                "alertname": "JouleScaleTpotSloAttainmentLow",
                "exp_alerts": [{
                    "exp_labels": {"namespace": "demo", "service": "slow", "severity": "warning"},
                    "exp_annotations": {"summary": "demo/slow: 70% of output tokens came within 0.02 s"},
                }],
            }],
        }],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    promtool = provision.ensure_binaries(["promtool"])["promtool"]
    run = subprocess.run([str(promtool), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
