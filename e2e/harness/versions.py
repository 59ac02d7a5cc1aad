"""Pinned versions of every binary the harness builds.

Bumping a version changes the cache key, so a stale cache is never reused.
"""

from __future__ import annotations

import hashlib

KUBERNETES_VERSION = "v1.34.4"
"""k8s.io/kubernetes; every k8s.io staging module is pinned to the matching v0.x release."""

ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.21.4"
PROMETHEUS_VERSION = "v3.16.0"
"""github.com/prometheus/prometheus; its Go module tags v3.MINOR.PATCH as v0.3MINOR.PATCH."""

KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
PROMETHEUS_BINARIES = ("prometheus", "promtool")
CLUSTER_BINARIES = (*KUBERNETES_BINARIES, "etcd", "kwok", "helm")
ALL_BINARIES = (*CLUSTER_BINARIES, *PROMETHEUS_BINARIES)


def staging_version(kubernetes_version: str = KUBERNETES_VERSION) -> str:
    """v1.34.4 -> v0.34.4: the staging modules share minor and patch with Kubernetes."""
    major_minor_patch = kubernetes_version.removeprefix("v").split(".")
    return "v0." + ".".join(major_minor_patch[1:])


def prometheus_module_version(version: str = PROMETHEUS_VERSION) -> str:
    """v3.16.0 -> v0.316.0: Prometheus' Go module versions fold the major into the minor."""
    major, minor, patch = version.removeprefix("v").split(".")
    return f"v0.{int(major)}{int(minor):02d}.{patch}"


def toolset_key(go_version: str) -> str:
    """A short key naming one exact toolset, so caches of different pins never mix."""
    text = "|".join((KUBERNETES_VERSION, ETCD_VERSION, KWOK_VERSION, HELM_VERSION, go_version))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def prometheus_key(go_version: str) -> str:
    """Prometheus has a cache directory of its own: bumping it rebuilds nothing else."""
    return hashlib.sha256(f"{PROMETHEUS_VERSION}|{go_version}".encode()).hexdigest()[:12]
