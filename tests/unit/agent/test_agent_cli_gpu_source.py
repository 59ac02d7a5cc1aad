"""The agent CLI's GPU source: the kubelet unless the unsafe mode is asked for, never both."""

from __future__ import annotations

import pytest

from joulescale_agent.events import NullEventRecorder
from joulescale_agent.gpu.simulated import SimulatedBackend
from joulescale_agent.main import make_discovery, parse_args


def test_the_kubelet_is_the_default_gpu_source() -> None:
    assert parse_args(["--node-name", "n1"]).gpu_source == "podresources"


def test_the_unsafe_mode_refuses_a_pod_resources_socket() -> None:
    args = parse_args(
        ["--node-name", "n1", "--gpu-source", "pod-spec-unsafe", "--pod-resources-socket", "/x.sock"]
    )
    backend: SimulatedBackend = None  # type: ignore[assignment]  # not reached
    with pytest.raises(SystemExit, match="exclude each other"):
        make_discovery(args, backend, None, None, NullEventRecorder())  # type: ignore[arg-type]


def test_an_unknown_gpu_source_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--gpu-source", "annotation"])
