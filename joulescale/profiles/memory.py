"""KV cache capacity of one instance, derived from GPU memory minus weights (docs/physics.md, "KV-cache capacity")."""

from __future__ import annotations

from joulescale.profiles.model import GpuProfile, KvCapacityDerivation

_MIB = 1024 * 1024


def derive_kv_capacity_tokens(
    gpu_memory_mib: int,
    tensor_parallel_size: int,
    kv_bytes_per_token: int,
    derivation: KvCapacityDerivation,
) -> int:
    """Tokens that fit: each GPU holds 1/TP of the weights and 1/TP of every token's KV.

    per GPU: usable = memory x utilization - weights / TP - reserved;
    tokens = usable / (kv_bytes_per_token / TP). Zero when the weights do not fit.
    """
    usable_bytes = (
        gpu_memory_mib * _MIB * derivation.gpu_memory_utilization
        - derivation.weight_bytes / tensor_parallel_size
        - derivation.reserved_mib * _MIB
    )
    per_gpu_token_bytes = kv_bytes_per_token / tensor_parallel_size
    return max(0, int(usable_bytes // per_gpu_token_bytes))


def derived_kv_capacity_tokens(profile: GpuProfile) -> int | None:
    """The derivation applied to a profile's own inputs, or None when it has none."""
    if profile.kv_capacity_derivation is None:
        return None
    return derive_kv_capacity_tokens(
        profile.gpu_memory_mib,
        profile.tensor_parallel_size,
        profile.kv_bytes_per_token,
        profile.kv_capacity_derivation,
    )
