"""Long replay windows for the coarse tier: an hour at the trace's own variation, a compressed day.

The shipped Azure traces (2023) hold one hour each (azure-conv 58.4 min, azure-code 57.3 min of
arrivals), so ``hour`` replays the whole trace and tiles its first minutes to fill 3600 s.
They hold no day: ``compressed_day`` keeps the trace's requests, lengths and burst structure
(the arrivals in trace order) and modulates their rate with a daily envelope, a cosine peaking
at 15:00 and lowest at 03:00 whose peak-to-trough ratio is ``swing``. That envelope is an
assumption of this module (stated in the output), not a measurement: the traces do not show it.
The day is compressed ``86400 / day_s`` times: the envelope runs that much faster, while the
arrivals within a stretch keep the trace's own gaps at the rate in force.
"""

from __future__ import annotations

import math

from joulescale.twin.traces import Trace, TraceRequest, scaled_window

HOUR_S = 3600.0
DAY_S = 86400.0
PEAK_HOUR = 15.0
"""Hour of the envelope's peak (afternoon); its trough is 12 hours away."""


def hour_window(trace: Trace, rate_scale: float = 1.0) -> list[TraceRequest]:
    """One hour of ``trace`` at ``rate_scale`` x its own rate, its variation unchanged."""
    return scaled_window(trace, rate_scale, HOUR_S)


def daily_factor(hour_of_day: float, swing: float) -> float:
    """The envelope's rate factor at an hour of the day: mean 1 over the day, peak / trough = ``swing``."""
    if swing < 1.0:
        raise ValueError("swing (peak-to-trough ratio) must be at least 1")
    amplitude = (swing - 1.0) / (swing + 1.0)
    return 1.0 + amplitude * math.cos(2.0 * math.pi * (hour_of_day - PEAK_HOUR) / 24.0)


def compressed_day(trace: Trace, day_s: float = HOUR_S, swing: float = 3.0, rate_scale: float = 1.0,
                   start_hour: float = 0.0) -> list[TraceRequest]:
    """A day of ``trace`` compressed into ``day_s`` seconds (see the module's docstring): the
    mean rate is ``rate_scale`` x the trace's, the rate at a moment ``rate_scale`` x the
    envelope's factor; the day starts at ``start_hour`` (midnight by default)."""
    if day_s <= 0 or rate_scale <= 0:
        raise ValueError("day_s and rate_scale must be positive")
    daily_factor(0.0, swing)  # checks the swing
    source = scaled_window(trace, 1.0, day_s * rate_scale * (swing + 1.0))  # enough at the peak rate
    out: list[TraceRequest] = []
    previous_s = 0.0
    now_s = 0.0
    hours_per_s = 24.0 / day_s
    for request in source:
        gap_s = request.arrival_s - previous_s
        previous_s = request.arrival_s
        factor = daily_factor((start_hour + now_s * hours_per_s) % 24.0, swing)
        now_s += gap_s / (rate_scale * factor)
        if now_s >= day_s:
            break
        out.append(TraceRequest(now_s, request.prompt_tokens, request.output_tokens))
    return out


def describe_day(day_s: float, swing: float) -> str:
    return (f"a day compressed into {day_s:g} s ({DAY_S / day_s:g}x): the trace's arrivals under an assumed "
            f"daily cosine, peak at {PEAK_HOUR:g}:00, peak/trough {swing:g} (the shipped traces hold one hour, no day)")
