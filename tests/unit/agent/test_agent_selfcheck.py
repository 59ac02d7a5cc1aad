"""``joulescale-agent --check`` imports what the flags select, late imports included."""

from __future__ import annotations

import pytest

from joulescale_agent.main import main, parse_args
from joulescale_agent.selfcheck import modules_for


def test_the_default_flags_need_nvml_grpc_and_the_kubernetes_client() -> None:
    modules = modules_for(parse_args(["--check"]))
    assert {"pynvml", "grpc", "joulescale_agent.discovery.kube"} <= set(modules)


def test_the_simulated_backend_and_the_unsafe_source_need_neither_nvml_nor_grpc() -> None:
    args = parse_args(["--check", "--backend=simulated", "--sim-dir=/x", "--gpu-source=pod-spec-unsafe"])
    modules = set(modules_for(args))
    assert not modules & {"pynvml", "grpc"}
    assert "joulescale_agent.discovery.kube" in modules


def test_a_static_instances_file_needs_no_kubernetes_discovery() -> None:
    modules = set(modules_for(parse_args(["--check", "--instances=/none.yaml"])))
    assert not {m for m in modules if "kube" in m} | (modules & {"grpc"})


def test_check_exits_0_without_a_node_name_and_touches_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--check", "--state-file=/nonexistent/dir/state.json"])
    assert exit_.value.code == 0
    assert "--check: ok" in capsys.readouterr().out


def test_check_still_refuses_bad_flags() -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--check", "--scrape-hz=fast"])
    assert exit_.value.code == 2
