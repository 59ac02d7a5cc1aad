"""What a performance database cannot give a profile: the GPU's clocks, power and settle time,
and the engine's step overhead.

``joulescale profile generate --power-from`` takes these from a full profile (a shipped or a
measured one) or from a hardware file that holds only them, each with its sources;
``--overhead-from`` takes the step overhead from another profile (``with_overhead_of``). Sources that
back latency or KV fields lose them (a source left with none is dropped): the generated profile
cites the database and the model's config for those.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError

from joulescale.profiles.model import (
    MAX_CLOCK_MHZ,
    MAX_MIB,
    MAX_MS,
    MAX_TEXT,
    MAX_WATTS,
    DecodeSensitivity,
    GpuProfile,
    PowerModel,
    PrefillSensitivity,
    SmClocks,
    Source,
    StepOverhead,
    _Strict,
)

_HARDWARE_FIELDS = (
    "gpu_product", "gpu_memory_mib", "sm_clocks", "memory_clock_mhz", "power_limit_watts",
    "idle_power_watts", "clock_settle_ms",
)
_LATENCY_OR_MODEL_ONLY = ("latency", "kv_", "weight_bytes")


class PhaseHardware(_Strict):
    clock_sensitivity: PrefillSensitivity | DecodeSensitivity
    power: PowerModel


class PrefillHardware(PhaseHardware):
    clock_sensitivity: PrefillSensitivity


class DecodeHardware(PhaseHardware):
    clock_sensitivity: DecodeSensitivity


class Hardware(_Strict):
    """One GPU product's clocks and power (per GPU), as a profile states them."""

    gpu_product: str = Field(min_length=1, max_length=MAX_TEXT)
    gpu_memory_mib: int = Field(gt=0, le=MAX_MIB)
    sm_clocks: SmClocks
    memory_clock_mhz: int = Field(gt=0, le=MAX_CLOCK_MHZ)
    power_limit_watts: float = Field(gt=0, le=MAX_WATTS)
    idle_power_watts: float = Field(ge=0, le=MAX_WATTS)
    clock_settle_ms: float = Field(ge=0, le=MAX_MS)
    prefill: PrefillHardware
    decode: DecodeHardware
    step_overhead: StepOverhead | None = None
    """The engine's time per step beyond the kernels (an engine and host property, not the GPU's)."""
    source: tuple[Source, ...] = Field(min_length=1, max_length=1000)
    origin: str = Field(default="", max_length=MAX_TEXT)
    """Where these numbers were read from (a profile's name or a file); filled in by the loader."""


def _hardware_part(source: Source) -> Source | None:
    """The source narrowed to the hardware fields it backs; None when it backs none."""
    fields = [f.strip() for f in source.fields.split(",") if f.strip()]
    kept = [f for f in fields if not any(tag in f for tag in _LATENCY_OR_MODEL_ONLY)]
    if not kept:
        return None
    return source if kept == fields else Source(fields=", ".join(kept), citation=source.citation)


def hardware_of(profile: GpuProfile) -> Hardware:
    """The hardware part of a full profile, with the sources that back it."""
    return Hardware(
        **{name: getattr(profile, name) for name in _HARDWARE_FIELDS},
        prefill=PrefillHardware(clock_sensitivity=profile.prefill.clock_sensitivity, power=profile.prefill.power),
        decode=DecodeHardware(clock_sensitivity=profile.decode.clock_sensitivity, power=profile.decode.power),
        step_overhead=profile.step_overhead,
        source=tuple(part for part in map(_hardware_part, profile.source) if part is not None) or profile.source,
        origin=f"profile {profile.name}",
    )


def _backs_overhead(source: Source) -> bool:
    return "step_overhead" in source.fields


def with_overhead_of(hardware: Hardware, text: str) -> Hardware:
    """``hardware`` with the step overhead of the profile ``text`` (name or file; "none": no
    overhead) and the sources that back it, in place of its own."""
    from joulescale.profiles.catalog import profile_by_name_or_path

    kept = tuple(source for source in hardware.source if not _backs_overhead(source))
    if text == "none":
        return hardware.model_copy(update={"step_overhead": None, "source": kept or hardware.source})
    donor = profile_by_name_or_path(text)
    if donor.step_overhead is None:
        raise ValueError(f"argument --overhead-from: profile {donor.name} has no step_overhead")
    cited = tuple(Source(fields=source.fields, citation=f"From profile {donor.name} (--overhead-from): "
                                                        f"{source.citation}")
                  for source in donor.source if _backs_overhead(source))
    return hardware.model_copy(update={"step_overhead": donor.step_overhead, "source": kept + cited})


def load_hardware(text: str) -> Hardware:
    """A profile name or file, or a hardware file (the strict profile rules apply to both)."""
    from joulescale.profiles.catalog import is_profile_path, profile_by_name_or_path
    from joulescale.profiles.loader import ProfileError, read_yaml_mapping

    if not is_profile_path(text):
        return hardware_of(profile_by_name_or_path(text))
    path = Path(text)
    document = read_yaml_mapping(path)
    if "schema_version" in document:
        return hardware_of(profile_by_name_or_path(text))
    try:
        return Hardware.model_validate({**document, "origin": f"file {path.name}"})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProfileError(f"hardware file {path.name}: field '{where}': {first['msg']}") from None
