"""The chart's NOTES work without the repository: installed by the real helm on the real
kube-apiserver, every kubectl command they print runs there, and they name no repository path."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from tests.integration.operator.test_chart_privileges import CHART

pytestmark = pytest.mark.integration

REPOSITORY_PATH = re.compile(r"\b(manifests|helm|docs|crds|e2e|tests|operator|node_agent)/|\.ya?ml\b")
NEEDS_A_RUNNING_POD = {"logs", "port-forward", "exec", "attach"}


def notes_of_install(plane: ControlPlane, release: str, *sets: str) -> tuple[str, str]:
    namespace = plane.create_namespace(release)
    args = [arg for value in sets for arg in ("--set", value)]
    plane.helm("install", release, str(CHART), "-n", namespace, *args, "--timeout", "60s")
    return namespace, plane.helm("get", "notes", release, "-n", namespace).stdout


def run_every_command(plane: ControlPlane, notes: str) -> list[list[str]]:
    """Run each `kubectl ...` line as printed; a command that needs a running pod (this control
    plane has no nodes) is checked by getting the object it names instead."""
    commands = [
        shlex.split(line.strip()) for line in notes.splitlines() if line.strip().startswith("kubectl ")
    ]
    for argv in commands:
        args = argv[1:]
        verb = next(a for a in args if not a.startswith("-") and a not in _flag_values(args))
        if verb in NEEDS_A_RUNNING_POD:
            target = next(a for a in args if "/" in a)
            args = [*_namespace_flag(args), "get", target]
        out = plane.kubectl(*args, check=False)
        assert out.returncode == 0, f"`{shlex.join(argv)}` failed:\n{out.stderr}"
    return commands


def _flag_values(args: list[str]) -> set[str]:
    return {args[i + 1] for i, a in enumerate(args[:-1]) if a in {"-n", "--namespace", "-l"}}


def _namespace_flag(args: list[str]) -> list[str]:
    return [args[0], args[1]] if args and args[0] in {"-n", "--namespace"} else []


def test_the_notes_commands_run_as_printed_with_default_values(crd_plane: ControlPlane) -> None:
    crd_plane.ensure_nvidia_runtime_class()
    namespace, notes = notes_of_install(crd_plane, "notes-default")
    try:
        assert not REPOSITORY_PATH.search(notes), notes
        commands = {shlex.join(c) for c in run_every_command(crd_plane, notes)}
        assert "kubectl get eals -A" in commands
        assert "kubectl explain energyawarellmservices.spec" in commands
        assert f"kubectl -n {namespace} logs deployment/notes-default-operator" in commands
        assert f"kubectl -n {namespace} port-forward daemonset/notes-default-agent 9400" in commands
        assert "kubectl get nodes -l nvidia.com/gpu.present=true" in commands
        assert "kubectl get runtimeclass nvidia" in commands
        # The Pod Security label command ran: the namespace now admits the agent.
        labels = yaml.safe_load(crd_plane.kubectl("get", "namespace", namespace, "-o", "yaml").stdout)[
            "metadata"
        ]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    finally:
        crd_plane.helm("uninstall", "notes-default", "-n", namespace)


def test_the_notes_follow_the_values(crd_plane: ControlPlane) -> None:
    for watched in ("notes-team-a", "notes-team-b"):
        crd_plane.kubectl("create", "namespace", watched, check=False)
    namespace, notes = notes_of_install(
        crd_plane,
        "notes-custom",
        "operator.enabled=false",
        "operator.watchNamespaces={notes-team-a,notes-team-b}",
        "agent.runtimeClassName=",
        "agent.nodeSelector=null",
        "agent.metricsPort=9500",
    )
    try:
        assert not REPOSITORY_PATH.search(notes), notes
        assert "The operator is disabled" in notes
        commands = {shlex.join(c) for c in run_every_command(crd_plane, notes)}
        assert {"kubectl -n notes-team-a get eals", "kubectl -n notes-team-b get eals"} <= commands
        assert "kubectl get eals -A" not in commands
        assert not any("logs" in c or "runtimeclass" in c for c in commands), commands
        assert f"kubectl -n {namespace} port-forward daemonset/notes-custom-agent 9500" in commands
        assert "every node" in notes
    finally:
        crd_plane.helm("uninstall", "notes-custom", "-n", namespace)
    # Without the agent nothing needs the privileged level, and there is no exporter to reach.
    namespace, notes = notes_of_install(crd_plane, "notes-no-agent", "agent.enabled=false")
    try:
        assert "Pod Security" not in notes
        assert "port-forward" not in notes
        assert f"kubectl -n {namespace} logs deployment/notes-no-agent-operator" in {
            shlex.join(c) for c in run_every_command(crd_plane, notes)
        }
    finally:
        crd_plane.helm("uninstall", "notes-no-agent", "-n", namespace)
