"""GPU x model physics: versioned profile data files, their loader, and the physics functions.

``from joulescale.profiles import load_profile``; the physics lives in
``joulescale.profiles.physics`` (pure functions on plain floats).
"""

from joulescale.profiles.catalog import (
    ProfileCatalog,
    catalog_from_dir,
    load_profile_dir,
    profile_by_name_or_path,
    shipped_catalog,
)
from joulescale.profiles.loader import (
    ProfileError,
    list_profiles,
    load_profile,
    load_profile_file,
    parse_profile,
    sm_clock_envelope_mhz,
)
from joulescale.profiles.memory import derive_kv_capacity_tokens, derived_kv_capacity_tokens
from joulescale.profiles.model import (
    SCHEMA_VERSION,
    DecodeLatency,
    DecodePhase,
    DecodeSensitivity,
    GpuProfile,
    KvCapacityDerivation,
    Phase,
    PowerModel,
    PrefillLatency,
    PrefillPhase,
    PrefillSensitivity,
    SmClocks,
    Source,
    StepOverhead,
)

__all__ = [
    "SCHEMA_VERSION",
    "DecodeLatency",
    "DecodePhase",
    "DecodeSensitivity",
    "GpuProfile",
    "KvCapacityDerivation",
    "Phase",
    "PowerModel",
    "PrefillLatency",
    "PrefillPhase",
    "PrefillSensitivity",
    "ProfileCatalog",
    "ProfileError",
    "SmClocks",
    "Source",
    "StepOverhead",
    "catalog_from_dir",
    "derive_kv_capacity_tokens",
    "derived_kv_capacity_tokens",
    "list_profiles",
    "load_profile",
    "load_profile_dir",
    "load_profile_file",
    "parse_profile",
    "profile_by_name_or_path",
    "shipped_catalog",
    "sm_clock_envelope_mhz",
]
