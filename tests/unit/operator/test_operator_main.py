"""The command line maps onto the operator's settings."""

from __future__ import annotations

from pathlib import Path

from joulescale_operator.main import parse_settings


def test_defaults_watch_every_namespace_with_a_liveness_endpoint() -> None:
    settings, verbose, check = parse_settings([])
    assert settings.namespaces == ()
    assert settings.kubeconfig is None
    assert settings.liveness_endpoint is not None
    assert not verbose
    assert not check


def test_flags_set_kubeconfig_namespaces_and_resync() -> None:
    settings, _, _ = parse_settings(
        ["--kubeconfig", "kc", "-n", "a", "-n", "b", "--resync-interval-seconds", "2", "--liveness", "off"]
    )
    assert settings.kubeconfig == Path("kc")
    assert settings.namespaces == ("a", "b")
    assert settings.resync_interval_s == 2.0
    assert settings.liveness_endpoint is None


def test_the_planner_loop_is_off_without_prometheus_and_its_flags_reach_the_settings() -> None:
    off, _, _ = parse_settings([])
    assert off.prometheus_url is None
    assert off.metrics_port is None
    on, _, _ = parse_settings(["--prometheus-url", "http://prom:9090", "--planner-cache-dir", "t",
                               "--planner-startup-seconds", "30", "--metrics-port", "8081"])
    assert on.prometheus_url == "http://prom:9090"
    assert on.planner_cache_dir == Path("t")
    assert on.planner_startup_s == 30.0
    assert on.metrics_port == 8081
