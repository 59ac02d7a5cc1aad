"""Picks the profile of an instance from the node's GPU product, the model and the TP size."""

from __future__ import annotations

from functools import cache

from joulescale.profiles import GpuProfile, list_profiles, load_profile
from joulescale_agent.discovery.desired import ProfileChooser


@cache
def _all() -> tuple[GpuProfile, ...]:
    return tuple(load_profile(name) for name in list_profiles())


def profile_chooser(gpu_product: str, fallback: str | None = None) -> ProfileChooser:
    """Exact (product, model, TP) match first, then (product, TP), then ``fallback``."""

    def choose(model: str, tensor_parallel_size: int) -> str | None:
        same_gpu = [
            p
            for p in _all()
            if p.gpu_product == gpu_product and p.tensor_parallel_size == tensor_parallel_size
        ]
        for p in same_gpu:
            if p.model == model:
                return p.name
        return same_gpu[0].name if same_gpu else fallback

    return choose
