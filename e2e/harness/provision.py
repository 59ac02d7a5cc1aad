"""Build the pinned control-plane binaries from their Go modules into a cache outside the repo.

Nothing here downloads a release binary: every tool is compiled by the local Go toolchain
from module sources fetched through the Go module proxy. A second run finds the cache and
returns at once. ``KUBEBUILDER_ASSETS`` (envtest's convention) supplies etcd,
kube-apiserver and kubectl when a user already has them.

Run ``python -m e2e.harness.provision`` to build ahead of the tests.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from e2e.harness import versions

ENVTEST_BINARIES = ("etcd", "kube-apiserver", "kubectl")
GO_MISSING = (
    "The Go toolchain (go >= 1.24) is required to build the local control plane and was not "
    "found on PATH. Install it, e.g. `apt-get install golang-go` on Debian 13 or a Go release "
    "from your distribution, or point KUBEBUILDER_ASSETS at existing etcd, kube-apiserver and "
    "kubectl binaries."
)

Log = Callable[[str], None]


class ProvisionError(RuntimeError):
    """A binary could not be provided; the message says what to do."""


def cache_root() -> Path:
    """Where builds live: outside the repository, shared by every checkout."""
    explicit = os.environ.get("JOULESCALE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "joulescale"


def go_version() -> str:
    go = shutil.which("go")
    if go is None:
        raise ProvisionError(GO_MISSING)
    out = subprocess.run([go, "env", "GOVERSION"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def bin_dir(name: str = "kube-apiserver") -> Path:
    """The cache directory of ``name``: the cluster's toolset shares one, Prometheus has its own."""
    go = go_version()
    if name in versions.PROMETHEUS_BINARIES:
        return cache_root() / "bin" / f"prometheus-{versions.prometheus_key(go)}"
    return cache_root() / "bin" / versions.toolset_key(go)


def _envtest_assets() -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    return Path(assets) if assets else None


def find_binary(name: str) -> Path | None:
    """The path of an already provisioned binary, or None."""
    assets = _envtest_assets()
    if assets is not None and name in ENVTEST_BINARIES and (assets / name).is_file():
        return assets / name
    try:
        candidate = bin_dir(name) / name
    except ProvisionError:
        return None
    return candidate if candidate.is_file() else None


def ensure_binaries(names: Iterable[str] = versions.ALL_BINARIES, log: Log = print) -> dict[str, Path]:
    """Return a path for each named binary, building whatever the cache lacks."""
    wanted = list(names)
    missing = [n for n in wanted if find_binary(n) is None]
    by_target: dict[Path, list[str]] = {}
    for name in missing:
        by_target.setdefault(bin_dir(name), []).append(name)
    for target, names_there in by_target.items():
        target.mkdir(parents=True, exist_ok=True)
        with _lock(target / ".lock"):
            still_missing = [n for n in names_there if not (target / n).is_file()]
            _build(still_missing, target, log)
    found = {n: find_binary(n) for n in wanted}
    absent = [n for n, p in found.items() if p is None]
    if absent:
        raise ProvisionError(f"binaries still missing after the build: {', '.join(absent)}")
    return {n: p for n, p in found.items() if p is not None}


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Serialise builds between concurrent test runs sharing one cache."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(names: list[str], target: Path, log: Log) -> None:
    times_file = target / "build-times.json"
    times: dict[str, float] = json.loads(times_file.read_text()) if times_file.exists() else {}
    groups = (
        ("kubernetes", [n for n in names if n in versions.KUBERNETES_BINARIES], _build_kubernetes),
        ("etcd", [n for n in names if n == "etcd"], _build_etcd),
        ("kwok", [n for n in names if n == "kwok"], _build_kwok),
        ("helm", [n for n in names if n == "helm"], _build_helm),
        ("prometheus", [n for n in names if n in versions.PROMETHEUS_BINARIES], _build_prometheus),
    )
    for group, members, builder in groups:
        if not members:
            continue
        log(f"provision: building {', '.join(members)} ({group}) into {target}; this runs once")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=target, prefix=".tmp-") as staging:
            builder(members, Path(staging), log)
            for name in members:
                os.replace(Path(staging) / name, target / name)
        times[group] = round(time.monotonic() - started, 1)
        times_file.write_text(json.dumps(times, indent=2) + "\n")
        log(f"provision: {group} built in {times[group]:.0f} s")


def _go(args: list[str], cwd: Path, log: Log) -> str:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    proc = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProvisionError(f"`go {' '.join(args)}` failed in {cwd}:\n{proc.stderr[-4000:]}")
    return proc.stdout


def _module_dir(name: str) -> Path:
    path = cache_root() / "build" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_module(path: Path, module: str, replaces: dict[str, str] | None = None) -> None:
    lines = [f"module {module}", "", "go 1.24", ""]
    for old, new in sorted((replaces or {}).items()):
        lines.append(f"replace {old} => {new}")
    (path / "go.mod").write_text("\n".join(lines) + "\n")


def kubernetes_staging_modules(kubernetes_go_mod: str) -> list[str]:
    """The k8s.io modules that k8s.io/kubernetes replaces with its ./staging copies."""
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", kubernetes_go_mod, re.M)))


def _build_kubernetes(members: list[str], out: Path, log: Log) -> None:
    version = versions.KUBERNETES_VERSION
    work = _module_dir(f"kubernetes-{version}")
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{version}"], work, log))
    staging = kubernetes_staging_modules(Path(info["GoMod"]).read_text())
    pinned = versions.staging_version(version)
    _write_module(work, "joulescale.local/kubernetes-binaries", {m: f"{m} {pinned}" for m in staging})
    packages = [f"k8s.io/kubernetes/cmd/{name}" for name in members]
    _go(["get", *(f"{p}@{version}" for p in packages)], work, log)
    major, minor = version.removeprefix("v").split(".")[:2]
    stamp = " ".join(
        f"-X {pkg}.{key}={value}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in (
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        )
    )
    _go(["build", "-trimpath", "-ldflags", f"-s -w {stamp}", "-o", str(out), *packages], work, log)


def _build_etcd(members: list[str], out: Path, log: Log) -> None:
    work = _module_dir(f"etcd-{versions.ETCD_VERSION}")
    _write_module(work, "joulescale.local/etcd")
    (work / "main.go").write_text(
        "// Command etcd is etcd's server entry point, built from its Go module.\n"
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    _go(["get", f"go.etcd.io/etcd/server/v3@{versions.ETCD_VERSION}"], work, log)
    _go(["mod", "tidy"], work, log)
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "etcd"), "."], work, log)


def _build_single(package: str, version: str, ldflags: str, name: str, out: Path, log: Log) -> Path:
    work = _module_dir(f"{name}-{version}")
    _write_module(work, f"joulescale.local/{name}")
    _go(["get", f"{package}@{version}"], work, log)
    _go(["build", "-trimpath", "-ldflags", f"-s -w {ldflags}", "-o", str(out / name), package], work, log)
    return work


def _build_kwok(members: list[str], out: Path, log: Log) -> None:
    version = versions.KWOK_VERSION
    _build_single(
        "sigs.k8s.io/kwok/cmd/kwok",
        version,
        f"-X sigs.k8s.io/kwok/pkg/consts.Version={version}",
        "kwok",
        out,
        log,
    )


def _build_helm(members: list[str], out: Path, log: Log) -> None:
    """Helm stamps the Kubernetes version it assumes offline (``helm template``) from the
    client-go it was built with, as its own Makefile does."""
    version = versions.HELM_VERSION
    work = _module_dir(f"helm-{version}")
    _write_module(work, "joulescale.local/helm")
    _go(["get", f"helm.sh/helm/v3/cmd/helm@{version}"], work, log)
    client_go = _go(["list", "-m", "-f", "{{.Version}}", "k8s.io/client-go"], work, log).strip()
    minor = client_go.removeprefix("v0.").split(".")[0]
    flags = [f"-X helm.sh/helm/v3/internal/version.version={version}"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={minor}"]
    _go(
        [
            "build",
            "-trimpath",
            "-ldflags",
            "-s -w " + " ".join(flags),
            "-o",
            str(out / "helm"),
            "helm.sh/helm/v3/cmd/helm",
        ],
        work,
        log,
    )


PROMETHEUS_BUILD_TAGS = "remove_all_sd"
"""Only static and file service discovery (what the harness uses): the cloud and Kubernetes SD
plugins would add the cloud SDKs and client-go to compile. Without the ``builtinassets`` tag the web UI's assets
are not embedded (they need a Node.js build); the HTTP API that tests query is complete."""


def _build_prometheus(members: list[str], out: Path, log: Log) -> None:
    """The server and promtool (``promtool check rules`` validates the chart's rules)."""
    version = versions.prometheus_module_version()
    work = _module_dir(f"prometheus-{versions.PROMETHEUS_VERSION}")
    _write_module(work, "joulescale.local/prometheus")
    packages = [f"github.com/prometheus/prometheus/cmd/{name}" for name in members]
    _go(["get", *(f"{p}@{version}" for p in packages)], work, log)
    common = "github.com/prometheus/common/version"
    stamp = f"-X {common}.Version={versions.PROMETHEUS_VERSION.removeprefix('v')} -X {common}.Branch=module"
    _go(
        [
            "build",
            "-trimpath",
            "-tags",
            PROMETHEUS_BUILD_TAGS,
            "-ldflags",
            f"-s -w {stamp}",
            "-o",
            str(out),
            *packages,
        ],
        work,
        log,
    )


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(versions.ALL_BINARIES)
    try:
        paths = ensure_binaries(names, log=lambda m: print(m, file=sys.stderr, flush=True))
    except ProvisionError as err:
        print(f"provision: {err}", file=sys.stderr)
        return 1
    for name, path in sorted(paths.items()):
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
