"""The agent's one connection to the apiserver, shared by discovery and the event writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client as _client
from kubernetes import config as _config

client: Any = _client  # parts of the kubernetes client are untyped
config: Any = _config


def api_client(kubeconfig: Path | None) -> Any:
    """An API client from the kubeconfig file, else from the in-cluster service account."""
    if kubeconfig is not None:
        return config.new_client_from_config(config_file=str(kubeconfig))
    config.load_incluster_config()
    return client.ApiClient()
