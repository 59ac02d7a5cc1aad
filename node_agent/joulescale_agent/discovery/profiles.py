"""Picks the profile of an instance from the node's GPU product, the model and the TP size."""

from __future__ import annotations

from joulescale.profiles import ProfileCatalog, shipped_catalog
from joulescale_agent.discovery.desired import ProfileChooser


def profile_chooser(gpu_product: str, catalog: ProfileCatalog | None = None) -> ProfileChooser:
    """The core's exact rule (``ProfileCatalog.match``), which the operator's DVFSActive condition
    uses too: no profile of another model or TP size stands in; without a match the pod is
    refused with reason ``no-profile``."""
    profiles = catalog if catalog is not None else shipped_catalog()

    def choose(model: str, tensor_parallel_size: int) -> str | None:
        found = profiles.match(gpu_product, model, tensor_parallel_size)
        return found.name if found is not None else None

    return choose
