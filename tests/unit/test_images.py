"""Each image installs exactly what its entry point needs under the shipped arguments.

Without a Docker engine: the image's install set is read where the Dockerfile reads it (the core
dependencies plus one extra of pyproject.toml), its closure is put into a fresh virtual
environment (files linked from this environment's installed distributions: no network, no
build), and the entry point's ``--check`` runs there in an isolated interpreter, with the
arguments the manifests pass. ``--check`` imports everything those arguments need, also the
modules that are otherwise imported late (pynvml, grpc). The set must also be minimal: without
any one of its direct requirements the check fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

IMAGES = {
    # image: (Dockerfile, entry point "module:function", manifest and container with its args)
    "operator": ("operator/Dockerfile", "joulescale_operator.main:main", "manifests/base/deployment.yaml"),
    "agent": ("node_agent/Dockerfile", "joulescale_agent.main:main", "manifests/agent/daemonset.yaml"),
}
HEAVY = {"matplotlib", "scipy", "cvxpy", "numpy"}
"""The twin's offline stack: no image carries it."""


def image_extras(image: str) -> set[str]:
    """The extras the image's Dockerfile installs (``pip install ".[a,b]"``)."""
    text = (ROOT / IMAGES[image][0]).read_text(encoding="utf-8")
    installs = re.findall(r"pip install[^\n]*?[\"']?\.\[([a-z0-9_,-]+)\][\"']?", text)
    assert len(installs) == 1, f"{IMAGES[image][0]}: expected one pip install of the project with extras"
    return set(installs[0].split(","))


def install_set(image: str) -> list[Requirement]:
    """The direct requirements of the image: the core dependencies and its extras."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    texts = list(PYPROJECT["project"]["dependencies"])
    for extra in sorted(image_extras(image)):
        texts += extras[extra]
    return [Requirement(t) for t in texts]


def closure(requirements: Iterable[Requirement]) -> set[str]:
    """Canonical names of the distributions pip would install for ``requirements``, read from
    this environment's metadata (markers evaluated here, extras followed)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(name)
        for text in metadata.distribution(name).requires or []:
            sub = Requirement(text)
            wanted = ("", *req.extras)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(sub)
    return names


def _link_distribution(name: str, site: Path) -> None:
    """Link the files of one installed distribution into ``site``: a regular package's folder (or
    the metadata folder) whole, other files one by one (namespace packages are shared)."""
    dist = metadata.distribution(name)
    files = [f for f in dist.files or [] if f.parts[0] != ".."]  # console scripts live elsewhere
    whole = {f.parts[0] for f in files if len(f.parts) == 2 and f.name == "__init__.py"}
    whole |= {f.parts[0] for f in files if f.parts[0].endswith((".dist-info", ".libs"))}
    for file in files:
        top = file.parts[0]
        destination = site / (top if top in whole else file)
        if destination.exists() or destination.is_symlink():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.symlink_to(Path(str(dist.locate_file(top if top in whole else file))))


def make_venv(target: Path, distributions: set[str]) -> Path:
    """A fresh venv holding only ``distributions`` (linked from this environment: no network,
    no build) and the project's own packages; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    python = target / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )
    for name in distributions:
        _link_distribution(name, site)
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    for where in find["where"]:
        for package in (ROOT / where).iterdir():
            included = any(re.fullmatch(p.replace("*", ".*"), package.name) for p in find["include"])
            if included and (package / "__init__.py").is_file():
                (site / package.name).symlink_to(package)
    return python


def manifest_args(image: str) -> list[str]:
    """The arguments the shipped manifest passes to the image's container."""
    manifest = yaml.safe_load((ROOT / IMAGES[image][2]).read_text(encoding="utf-8"))
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return [str(a) for a in container.get("args", [])]


def run_check(python: Path, image: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    module, function = IMAGES[image][1].split(":")
    code = f"import sys; from {module} import {function} as m; sys.argv[0] = {image!r}; sys.exit(m())"
    return subprocess.run(
        [str(python), "-I", "-c", code, "--check", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_image_install_set_runs_the_entry_point_check(image: str, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", closure(install_set(image)))
    for args in ([], manifest_args(image)):  # the code's defaults, then the shipped arguments
        result = run_check(python, image, args, tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "--check: ok" in result.stdout


def _minimality_cases() -> list[tuple[str, str]]:
    """(image, direct requirement) pairs whose removal takes the distribution out of the closure."""
    cases = []
    for image in sorted(IMAGES):
        direct = install_set(image)
        for req in direct:
            rest = [r for r in direct if r is not req]
            if canonicalize_name(req.name) not in closure(rest):
                cases.append((image, req.name))
    return cases


@pytest.mark.parametrize(("image", "removed"), _minimality_cases())
def test_without_any_direct_requirement_the_check_fails(image: str, removed: str, tmp_path: Path) -> None:
    rest = [r for r in install_set(image) if r.name != removed]
    python = make_venv(tmp_path / "venv", closure(rest))
    result = run_check(python, image, manifest_args(image), tmp_path)
    assert result.returncode != 0, f"{image} runs without {removed}: drop it from its install set"
    assert "No module named" in result.stderr or "cannot import" in result.stderr


def test_the_agent_check_imports_grpc_for_the_pod_resources_socket() -> None:
    """The issue's crash: the shipped arguments use the kubelet socket, whose client is grpcio."""
    assert "grpcio" in {r.name for r in install_set("agent")}
    assert any(a.startswith("--pod-resources-socket") for a in manifest_args("agent"))


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_images_do_not_carry_the_twin_offline_stack(image: str) -> None:
    assert not closure(install_set(image)) & HEAVY


def test_the_operator_image_runs_as_non_root() -> None:
    text = (ROOT / IMAGES["operator"][0]).read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users, "the operator image sets no USER"
    assert users[-1].split(":")[0] not in ("0", "root")


def test_the_agent_image_says_why_it_runs_as_root() -> None:
    """Root with CAP_SYS_ADMIN is the least NVML clock locking accepts (docs/gpu-validation.md)."""
    text = (ROOT / IMAGES["agent"][0]).read_text(encoding="utf-8")
    assert not re.findall(r"^USER\s+", text, re.MULTILINE)
    assert "CAP_SYS_ADMIN" in text
    assert "docs/gpu-validation.md" in text
