"""The single place where NVML errors become the agent's own exceptions.

The map goes by the NVML error *class names* of the ``pynvml`` module in use, so a fake module
that reuses the real module's exception classes exercises exactly this code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from joulescale_agent import errors

NVML_ERROR_MAP: dict[str, type[errors.GpuError]] = {
    "NVMLError_NoPermission": errors.GpuPermissionError,
    "NVMLError_NotSupported": errors.GpuNotSupportedError,
    "NVMLError_NotFound": errors.GpuNotFoundError,
    "NVMLError_LibraryNotFound": errors.GpuUnavailableError,
    "NVMLError_DriverNotLoaded": errors.GpuUnavailableError,
    "NVMLError_Uninitialized": errors.GpuUnavailableError,
    "NVMLError_GpuIsLost": errors.GpuLostError,
    "NVMLError_FunctionNotFound": errors.GpuNotSupportedError,
}
"""NVML exception class name -> agent exception; anything else becomes a plain GpuError.

Only NotFound and GpuIsLost mean "that GPU is gone" to the actuator. InvalidArgument is a plain
GpuError on purpose: a bad handle or argument says nothing about the GPU's clock, which may
still be locked, so the GPU stays in the state file."""


def map_nvml_error(nvml: Any, error: BaseException, operation: str) -> errors.GpuError:
    """Translate one NVML exception raised by ``operation``."""
    for class_name, agent_error in NVML_ERROR_MAP.items():
        nvml_class = getattr(nvml, class_name, None)
        if nvml_class is not None and isinstance(error, nvml_class):
            return agent_error(f"{operation}: {error}")
    return errors.GpuError(f"{operation}: {error}")


@contextmanager
def nvml_call(nvml: Any, operation: str) -> Iterator[None]:
    """Run NVML calls, re-raising NVML errors as agent errors with the cause chained."""
    try:
        yield
    except nvml.NVMLError as error:
        raise map_nvml_error(nvml, error, operation) from error
