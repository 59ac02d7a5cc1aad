"""The clocks a policy may choose: device clocks intersected with the service's bounds."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from joulescale.control.policy import ClockBounds


class NoAllowedClockError(ValueError):
    """The service's clock bounds exclude every clock the device supports."""


def allowed_clocks_mhz(supported_mhz: Sequence[int], bounds: ClockBounds | None) -> tuple[int, ...]:
    """Supported clocks within [max(device min, policy min), min(device max, policy max)], ascending."""
    clocks = tuple(sorted(set(supported_mhz)))
    if bounds is None:
        return clocks
    if bounds.min_mhz > bounds.max_mhz:
        raise NoAllowedClockError(f"clock bounds min {bounds.min_mhz} MHz > max {bounds.max_mhz} MHz")
    inside = tuple(f for f in clocks if bounds.min_mhz <= f <= bounds.max_mhz)
    if not inside:
        raise NoAllowedClockError(
            f"no supported clock in [{bounds.min_mhz}, {bounds.max_mhz}] MHz "
            f"(device supports {clocks[0]}-{clocks[-1]} MHz)"
        )
    return inside


def snap_up_mhz(allowed_mhz: Sequence[int], target_mhz: float) -> int:
    """The lowest allowed clock at or above the target (never slower than asked), clamped to the range."""
    index = bisect.bisect_left(allowed_mhz, target_mhz)
    return allowed_mhz[min(index, len(allowed_mhz) - 1)]


def levels_mhz(allowed_mhz: Sequence[int], count: int, low_mhz: float | None = None) -> tuple[int, ...]:
    """``count`` allowed clocks evenly spanning [low, top], snapped up, ascending and unique.

    BiScale's MPC uses 7 levels over [f_min_allowed, f_max]; ``low_mhz`` narrows the span.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    top = allowed_mhz[-1]
    low = allowed_mhz[0] if low_mhz is None else snap_up_mhz(allowed_mhz, low_mhz)
    if count == 1 or low >= top:
        return (top,)
    step = (top - low) / (count - 1)
    return tuple(sorted({snap_up_mhz(allowed_mhz, low + i * step) for i in range(count)}))
