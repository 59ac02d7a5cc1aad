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

KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
ALL_BINARIES = (*KUBERNETES_BINARIES, "etcd", "kwok", "helm")


def staging_version(kubernetes_version: str = KUBERNETES_VERSION) -> str:
    """v1.34.4 -> v0.34.4: the staging modules share minor and patch with Kubernetes."""
    major_minor_patch = kubernetes_version.removeprefix("v").split(".")
    return "v0." + ".".join(major_minor_patch[1:])


def toolset_key(go_version: str) -> str:
    """A short key naming one exact toolset, so caches of different pins never mix."""
    text = "|".join((KUBERNETES_VERSION, ETCD_VERSION, KWOK_VERSION, HELM_VERSION, go_version))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
