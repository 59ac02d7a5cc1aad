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
IMAGES = {
    # image: (Dockerfile, project folder it installs, entry point "module:function")
    "operator": ("operator/Dockerfile", ".", "joulescale_operator.main:main"),
    "agent": ("node_agent/Dockerfile", ".", "joulescale_agent.main:main"),
    "router": ("router/Dockerfile", "router", "joulescale_router.main:main"),
}
HEAVY = {"matplotlib", "scipy", "cvxpy", "numpy", "aiconfigurator", "aiconfigurator-core", "pandas", "pyarrow"}
"""The twin's offline stack and the profile generator's database: no image carries them, but for
the planner's solver in the operator's."""
PLANNER_STACK = {"operator": {"cvxpy", "numpy", "scipy"}}
"""The operator plans placements with cvxpy and HiGHS (joulescale.planning.program)."""


def pyproject(image: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / IMAGES[image][1] / "pyproject.toml").read_text(encoding="utf-8"))


def image_extras(image: str) -> set[str]:
    """The extras the image's Dockerfile installs (``pip install ".[a,b]"``, or none: ``.``)."""
    text = (ROOT / IMAGES[image][0]).read_text(encoding="utf-8")
    installs = re.findall(r"pip install [^\n]*?[\"']?\.(?:\[([a-z0-9_,-]+)\])?[\"']?(?:\s|$)", text)
    assert len(installs) == 1, f"{IMAGES[image][0]}: expected one pip install of the project"
    assert text.count("pip install") == 1, f"{IMAGES[image][0]}: installs something outside its set"
    return set(installs[0].split(",")) - {""}


def local_projects(image: str) -> list[Path]:
    """Project folders of this repository the Dockerfile installs next to the image's own
    (``pip install ./engine_hook ".[agent]"``): linked like the project's packages."""
    text = (ROOT / IMAGES[image][0]).read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if "pip install" in line)
    return [ROOT / IMAGES[image][1] / folder for folder in re.findall(r"\s\./([A-Za-z0-9_-]+)", line)]


def install_set(image: str) -> list[Requirement]:
    """The direct requirements of the image: the project's dependencies and the extras named."""
    project = pyproject(image)["project"]
    texts = list(project["dependencies"])
    for extra in sorted(image_extras(image)):
        texts += project["optional-dependencies"][extra]
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


def make_venv(target: Path, image: str, distributions: set[str]) -> Path:
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
    for project in (ROOT / IMAGES[image][1], *local_projects(image)):
        toml = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        find = toml["tool"]["setuptools"]["packages"]["find"]
        for where in find["where"]:
            for package in (project / where).iterdir():
                included = any(re.fullmatch(p.replace("*", ".*"), package.name) for p in find["include"])
                if included and (package / "__init__.py").is_file():
                    (site / package.name).symlink_to(package)
    return python


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return dict(container)


def rendered_router(sample: str = "vllm-nixl.yaml") -> dict[str, Any]:
    """The router container the operator renders for a vLLM sample."""
    from joulescale_operator.identity import ServiceIdentity
    from joulescale_operator.render import render_children
    from joulescale_operator.validation import validated_spec

    raw = yaml.safe_load((ROOT / "manifests" / "samples" / sample).read_text(encoding="utf-8"))
    identity = ServiceIdentity(namespace="ns", name=raw["metadata"]["name"], uid="u", generation=1)
    children = render_children(identity, validated_spec(identity, raw["spec"]))
    (router,) = [c for c in children if c["kind"] == "Deployment" and c["metadata"]["name"].endswith("-router")]
    return _container(router)


def manifest_args(image: str) -> list[str]:
    """The arguments the shipped manifests (the router: the operator) pass to the image."""
    if image == "router":
        container = rendered_router()
    else:
        path = {"operator": "manifests/base/deployment.yaml", "agent": "manifests/agent/daemonset.yaml"}[image]
        container = _container(yaml.safe_load((ROOT / path).read_text(encoding="utf-8")))
    return [str(a) for a in container.get("args", [])]


def run_check(python: Path, image: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    module, function = IMAGES[image][2].split(":")
    code = f"import sys; from {module} import {function} as m; sys.argv[0] = {image!r}; sys.exit(m())"
    return subprocess.run(
        [str(python), "-I", "-c", code, "--check", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_image_install_set_runs_the_entry_point_check(image: str, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", image, closure(install_set(image)))
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
    python = make_venv(tmp_path / "venv", image, closure(rest))
    result = run_check(python, image, manifest_args(image), tmp_path)
    assert result.returncode != 0, f"{image} runs without {removed}: drop it from its install set"
    assert "No module named" in result.stderr or "cannot import" in result.stderr


def test_the_agent_image_carries_the_engine_hook_reader(tmp_path: Path) -> None:
    """With --hook-dir the agent reads the hook's sockets through the hook's own package, which
    the image installs from engine_hook/ (it is no PyPI dependency)."""
    assert [p.name for p in local_projects("agent")] == ["engine_hook"]
    python = make_venv(tmp_path / "venv", "agent", closure(install_set("agent")))
    result = run_check(python, "agent", [*manifest_args("agent"), "--hook-dir", "/run/joulescale/hook"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "joulescale_hook.transport" in result.stdout


def test_the_agent_check_imports_grpc_for_the_pod_resources_socket() -> None:
    """The issue's crash: the shipped arguments use the kubelet socket, whose client is grpcio."""
    assert "grpcio" in {r.name for r in install_set("agent")}
    assert any(a.startswith("--pod-resources-socket") for a in manifest_args("agent"))


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_images_do_not_carry_the_twin_offline_stack(image: str) -> None:
    assert not closure(install_set(image)) & (HEAVY - PLANNER_STACK.get(image, set()))


@pytest.mark.parametrize("image", ["operator", "router"])
def test_the_images_without_gpu_work_run_as_non_root(image: str) -> None:
    text = (ROOT / IMAGES[image][0]).read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users, f"the {image} image sets no USER"
    assert users[-1].split(":")[0] not in ("0", "root")


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_dockerfile_runs_the_check_at_build_time(image: str) -> None:
    text = (ROOT / IMAGES[image][0]).read_text(encoding="utf-8")
    assert re.search(rf"^RUN joulescale-{image} --check$", text, re.MULTILINE)


def test_the_vllm_router_uses_the_shipped_proxy_with_the_operator_rendered_flags() -> None:
    """The sample's router image is built from router/; the operator keeps its entrypoint, and
    the flags it renders point the proxy at the role Services on the engine port."""
    from joulescale_router.main import parse_args

    container = rendered_router()
    assert container["image"].startswith("ghcr.io/joulescale/joulescale-router:")
    assert "command" not in container
    entry = re.findall(r'^ENTRYPOINT \["(\S+)"\]', (ROOT / IMAGES["router"][0]).read_text(), re.MULTILINE)
    assert entry == ["joulescale-router"]
    assert "joulescale-router" in pyproject("router")["project"]["scripts"]
    args = parse_args(container["args"])
    assert args.prefill_urls == ["http://llama-70b-prefill.ns.svc:8000"]
    assert args.decode_urls == ["http://llama-70b-decode.ns.svc:8000"]


def test_the_agent_image_says_why_it_runs_as_root() -> None:
    """Root with CAP_SYS_ADMIN is the least NVML clock locking accepts (docs/gpu-validation.md)."""
    text = (ROOT / IMAGES["agent"][0]).read_text(encoding="utf-8")
    assert not re.findall(r"^USER\s+", text, re.MULTILINE)
    assert "CAP_SYS_ADMIN" in text
    assert "docs/gpu-validation.md" in text
