"""Every PromQL expression of the chart's dashboard and alerts runs on a real Prometheus that
scrapes simulated engines and the real agent on loopback under load, and returns data.

The chart is rendered by the real helm client (as a cluster with the Prometheus Operator's CRDs
would render it); its rules pass ``promtool check rules`` and are loaded into the server. The
targets carry the labels the chart's PodMonitor gives engine pods (namespace, pod, service,
role), and the agent's series name their engine's labels themselves (honorLabels).
Panels that read the operator's planner metrics need the operator scraped (not here): they are
checked to run without error and listed by ``OPERATOR_METRICS``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness import provision
from e2e.harness.agentprocs import free_port, http_get, start_agent, start_engine, wait_for, write_instances
from e2e.harness.prometheus import PrometheusServer, ScrapeTarget
from e2e.simengine.loadgen import replay
from joulescale.engines.bucket_estimates import share_within
from joulescale.profiles import load_profile
from joulescale.twin.traces import load_trace, scaled_window
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[3] / "helm" / "joulescale"
PROFILE = "h100-sxm-llama-8b-tp1"
NAMESPACE, SERVICE = "demo", "chat"
ROLES = ("prefill", "decode")
OPERATOR_METRICS = re.compile(r"joulescale_operator_\w+")
"""The planner loop's metrics (the operator's /metrics): absent from this rig."""
GRAFANA_VARIABLES = {
    "$namespace": ".*",
    "$service": ".*",
    "$__rate_interval": "20s",
    "$__range": "5m",
    "$ttft_target": "1",
    "$tpot_target": "0.02",
}
"""What Grafana substitutes (the dashboard's defaults; 'All' for the selectors; a TPOT target
between vLLM's 10 and 25 ms inter-token buckets)."""
MONITORING_CRDS = ("PodMonitor", "PrometheusRule", "ServiceMonitor")


def render_chart(out: Path) -> list[dict[str, Any]]:
    helm = provision.ensure_binaries(["helm"])["helm"]
    argv = [str(helm), "template", "js", str(CHART), "-n", "joulescale-system"]
    for kind in MONITORING_CRDS:
        argv += ["--api-versions", f"monitoring.coreos.com/v1/{kind}"]
    text = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    (out / "rendered.yaml").write_text(text)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s rendered"
    return found[0]


def dashboard_queries(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(panel title, expression with Grafana's variables substituted) for every panel target."""
    configmaps = [d for d in docs if d["kind"] == "ConfigMap" and "joulescale.json" in d.get("data", {})]
    assert len(configmaps) == 1
    assert configmaps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmaps[0]["data"]["joulescale.json"])
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"an unknown Grafana variable in {panel['title']}: {expr}"
            queries.append((panel["title"], expr))
    return queries


@dataclass
class Rig:
    prometheus: PrometheusServer
    docs: list[dict[str, Any]]
    engines: dict[str, subprocess.Popen[bytes]]
    engine_addresses: dict[str, str]
    loaded_at_s: float
    """Just after the load: an instant whose 20 s rate window holds traffic."""


def _load(prefill_url: str, decode_url: str, seconds: float) -> None:
    trace = load_trace("azure-conv")
    requests = [
        replace(r, prompt_tokens=min(r.prompt_tokens, 2048), output_tokens=min(r.output_tokens, 64))
        for r in scaled_window(trace, 1.0, seconds, start_s=600.0)
    ]
    asyncio.run(replay(requests, prefill_url, decode_url))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("promql")
    docs = render_chart(tmp)
    rule = one(docs, "PrometheusRule")
    rules_file = tmp / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    promtool = provision.ensure_binaries(["promtool"])["promtool"]
    check = subprocess.run([str(promtool), "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    sim_dir = tmp / "gpus"
    SimGpuDir.create(sim_dir, specs_from_profile(load_profile(PROFILE), [f"GPU-{r}" for r in ROLES]))
    ports = {role: free_port() for role in ROLES}
    procs: list[subprocess.Popen[bytes]] = []
    engines = {}
    for role in ROLES:
        engines[role] = start_engine(
            role, ports[role], sim_dir, [f"GPU-{role}"], tmp / f"{role}.log", PROFILE
        )
        procs.append(engines[role])
    instances = tmp / "instances.json"
    policy = {
        "policy": "joulescale",
        "profile": PROFILE,
        "slo": {"ttft_ms": 1000, "tpot_ms": 25, "percentile": 90},
    }
    write_instances(
        instances,
        [
            {
                "namespace": NAMESPACE,
                "service": SERVICE,
                "pod": f"{SERVICE}-{role}-0",
                "role": role,
                "engine": "vllm",
                "metrics_url": f"http://127.0.0.1:{ports[role]}/metrics",
                "gpus": [f"GPU-{role}"],
                "policy": policy,
            }
            for role in ROLES
        ],
    )
    agent_port = free_port()
    procs.append(start_agent(sim_dir, tmp / "state.json", instances, agent_port, tmp / "agent.log"))
    server = PrometheusServer(tmp / "prometheus", scrape_interval_s=1.0, rule_files=[rules_file])
    try:
        for role in ROLES:
            wait_for(lambda r=role: http_get(f"http://127.0.0.1:{ports[r]}/health")[0] == 200, 30, role)
        wait_for(lambda: http_get(f"http://127.0.0.1:{agent_port}/readyz")[0] == 200, 30, "agent ready")
        server.start()
        addresses = {role: f"127.0.0.1:{ports[role]}" for role in ROLES}
        server.set_targets(
            "engines",
            [
                ScrapeTarget(
                    addresses[role],
                    {"namespace": NAMESPACE, "service": SERVICE, "role": role, "pod": f"{SERVICE}-{role}-0"},
                )
                for role in ROLES
            ],
        )
        # What the ServiceMonitor gives the agent's target: its own pod, namespace and Service.
        agent_address = f"127.0.0.1:{agent_port}"
        server.set_targets(
            "agents",
            [
                ScrapeTarget(
                    agent_address,
                    {"namespace": "joulescale-system", "pod": "js-agent-x", "service": "js-agent"},
                )
            ],
        )
        for address in (*addresses.values(), agent_address):
            server.wait_scraped(address, timeout_s=30)
        load = threading.Thread(
            target=_load, args=(f"http://{addresses['prefill']}", f"http://{addresses['decode']}", 20.0)
        )
        load.start()
        load.join(timeout=120)
        assert not load.is_alive()
        time.sleep(2.5)  # two more scrapes after the last request
        yield Rig(server, docs, engines, addresses, time.time())
    finally:
        server.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result]


def test_every_dashboard_panel_returns_data(rig: Rig) -> None:
    queries = dashboard_queries(rig.docs)
    titles = {title for title, _ in queries}
    assert len(titles) == 10
    empty, operator = [], []
    for title, expr in queries:
        result = rig.prometheus.query(expr)  # raises on a PromQL error
        if OPERATOR_METRICS.search(expr):
            operator.append(title)
            continue
        finite = [v for v in _values(result) if math.isfinite(v)]
        if not finite:
            empty.append(f"{title}: {expr} -> {result}")
            continue
        print(f"{title}: {[round(v, 4) for v in finite]}")
        assert all(r["metric"].get("service") == SERVICE for r in result if "service" in r["metric"]), title
    assert not empty, "\n".join(empty)
    assert len(set(operator)) == 3, operator


def test_the_numbers_mean_what_the_panels_say(rig: Rig) -> None:
    """J per token of the decode phase is the decode GPU's energy over its output tokens."""
    q = rig.prometheus.query
    by_phase = {
        r["metric"]["role"]: float(r["value"][1])
        for r in q(next(e for t, e in dashboard_queries(rig.docs) if t.startswith("Power by service")))
    }
    assert set(by_phase) == set(ROLES)
    assert all(60.0 < w < 800.0 for w in by_phase.values()), by_phase  # an H100 idles near 70 W
    energy = _values(q('rate(joulescale_gpu_energy_joules_total{role="decode"}[20s])'))
    tokens = _values(q('rate(vllm:generation_tokens_total{role="decode"}[20s])'))
    per_token = [
        float(r["value"][1])
        for t, e in dashboard_queries(rig.docs)
        if t.startswith("Energy per token by phase")
        for r in q(e)
        if r["metric"].get("role") == "decode"
    ]
    assert per_token
    assert tokens[0] > 0
    assert per_token[0] == pytest.approx(energy[0] / tokens[0], rel=1e-6)
    replicas_expr = next(e for t, e in dashboard_queries(rig.docs) if t.startswith("Replicas serving"))
    assert {r["metric"]["role"]: float(r["value"][1]) for r in q(replicas_expr)} == dict.fromkeys(ROLES, 1.0)


def test_the_attainment_panel_interpolates_as_the_operator_does(rig: Rig) -> None:
    """The panel's TPOT attainment at a target between two bucket edges (inside the bucket that
    holds the engines' token gaps) is the share the operator's rule (bucket_estimates.share_within)
    computes from the same buckets, not the share of the whole buckets under it."""
    q = rig.prometheus.query
    buckets_expr = 'sum by (le) (rate(vllm:inter_token_latency_seconds_bucket{service="chat"}[20s]))'
    rows = q(buckets_expr, at=rig.loaded_at_s)
    buckets = sorted((float(r["metric"]["le"]), float(r["value"][1])) for r in rows)
    lower, below = 0.0, 0.0
    for le, cumulative in buckets:
        if cumulative > below:
            break
        lower, below = le, cumulative
    assert not math.isinf(le), f"every token gap beyond the last edge: {buckets}"
    target = lower + 0.4 * (le - lower)  # between two edges, inside the bucket that holds gaps
    panel = next(e for t, e in dashboard_queries(rig.docs) if t.startswith("SLO attainment") and "inter_token" in e)
    shown = q(panel.replace(f"histogram_fraction(0, {GRAFANA_VARIABLES['$tpot_target']},",
                            f"histogram_fraction(0, {target!r},"), at=rig.loaded_at_s)
    expected = share_within(buckets, target)
    assert expected is not None
    assert expected > below / buckets[-1][1]
    assert [r["metric"]["service"] for r in shown] == [SERVICE]
    assert float(shown[0]["value"][1]) == pytest.approx(expected, rel=1e-9)
    print(f"TPOT attainment at {target * 1000:.1f} ms (edges {lower * 1000:g} and {le * 1000:g} ms): "
          f"{expected:.4f}; whole buckets only: {below / buckets[-1][1]:.4f}")


def test_every_rule_loads_and_evaluates_without_error(rig: Rig) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in rig.prometheus.rules() for r in g["rules"]]
        return rules if all(r.get("lastEvaluation", "").startswith("2") for r in rules) else None

    wait_for(lambda: evaluated() is not None, 15, "every rule evaluated", interval_s=0.5)
    rules = evaluated() or []
    assert {r["name"] for r in rules} == {
        "JouleScaleTtftSloAttainmentLow",
        "JouleScaleTpotSloAttainmentLow",
        "JouleScaleAgentFailSafe",
        "JouleScaleAgentReadOnly",
        "JouleScaleClocksLockedOnStaleEngine",
        "JouleScalePlanFailing",
    }
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]


def _rule_exprs(rig: Rig) -> dict[str, str]:
    rule = one(rig.docs, "PrometheusRule")
    return {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}


def test_slo_attainment_alerts_compare_data_that_exists(rig: Rig) -> None:
    """The attainment the alert compares is there for the service, a share in [0, 1], and the
    alert's expression selects exactly the series under the threshold."""
    exprs = _rule_exprs(rig)
    for name in ("JouleScaleTtftSloAttainmentLow", "JouleScaleTpotSloAttainmentLow"):
        attainment, threshold = exprs[name].rsplit("<", 1)
        found = rig.prometheus.query(attainment)
        assert [r["metric"]["service"] for r in found] == [SERVICE], name
        share = float(found[0]["value"][1])
        assert 0.0 <= share <= 1.0
        alerting = rig.prometheus.query(exprs[name])
        assert bool(alerting) == (share < float(threshold)), (name, share, alerting)


def test_agent_alerts_read_the_agents_series(rig: Rig) -> None:
    """Healthy: neither fires. The read-only gauge is the agent target's (its pod and namespace);
    the fail-safe gauge appears with the first fail-safe (the last test provokes one)."""
    exprs = _rule_exprs(rig)
    read_only = rig.prometheus.query(exprs["JouleScaleAgentReadOnly"].replace("== 1", ">= 0"))
    assert [r["metric"]["pod"] for r in read_only] == ["js-agent-x"]
    assert not rig.prometheus.query(exprs["JouleScaleAgentFailSafe"])
    assert not rig.prometheus.query(exprs["JouleScaleAgentReadOnly"])


def test_the_agent_exports_no_created_series_and_labels_its_series_by_service(rig: Rig) -> None:
    q = rig.prometheus.query
    assert q('count by (__name__) ({scrape_job="agents", __name__=~"joulescale_.+"})')
    assert not q('{scrape_job="agents", __name__=~".+_created"}')
    per_instance = q('count by (namespace, service, role) (joulescale_decisions_total{scrape_job="agents"})')
    assert {
        (r["metric"]["namespace"], r["metric"]["service"], r["metric"]["role"]) for r in per_instance
    } == {(NAMESPACE, SERVICE, role) for role in ROLES}


def test_a_stale_engine_fires_the_fail_safe_alert_and_not_the_locked_clock_one(rig: Rig) -> None:
    """Last (it stops the decode engine): the agent releases the decode GPU's lock, so the
    fail-safe condition holds for the decode pod, the engine's side of the locked-clock
    condition sees the stale engine, and its whole condition stays empty: the lock is gone."""
    exprs = _rule_exprs(rig)
    rig.engines["decode"].kill()
    rig.engines["decode"].wait()
    q = rig.prometheus.query

    wait_for(lambda: bool(q(exprs["JouleScaleAgentFailSafe"])), 20, "the fail-safe condition", interval_s=0.5)
    assert [r["metric"]["role"] for r in q(exprs["JouleScaleAgentFailSafe"])] == ["decode"]
    locked, stale_side = exprs["JouleScaleClocksLockedOnStaleEngine"].split("and on (namespace, pod)")
    wait_for(lambda: bool(q(stale_side)), 20, "the stale engine's side", interval_s=0.5)
    assert [r["metric"]["pod"] for r in q(stale_side)] == [f"{SERVICE}-decode-0"]
    decode_locks = [r for r in q(locked.strip()) if r["metric"]["role"] == "decode"]
    assert not decode_locks, "the agent released the decode lock"
    assert not q(exprs["JouleScaleClocksLockedOnStaleEngine"])
