"""The GPU validation procedure, run against the recording fake of pynvml."""

from __future__ import annotations

from typing import Any

import pynvml

from joulescale_agent.clock import ManualClock
from joulescale_agent.gpu.nvml import NvmlBackend
from joulescale_agent.validate_gpu import pick_clocks, validate
from tests.unit.agent.fake_pynvml import FakeDevice, FakeNvml

GPU = "GPU-00000000-0000-0000-0000-000000000000"


def _run(nvml: FakeNvml) -> dict[str, Any]:
    clock = ManualClock()
    return validate(
        NvmlBackend(nvml),
        GPU,
        clock_count=3,
        hold_s=0.1,
        energy_window_s=1.0,
        clock=clock,
        sleep=clock.advance,
    )


def test_validation_locks_each_clock_reads_it_back_and_resets_at_the_end() -> None:
    nvml = FakeNvml([FakeDevice(GPU)])
    report = _run(nvml)
    locks = [args[1:] for name, args in nvml.calls if name == "nvmlDeviceSetGpuLockedClocks"]
    assert locks == [(1980, 1980), (1005, 1005), (345, 345)]
    assert [entry["read_back_mhz"] for entry in report["locks"]] == [1980, 1005, 345]
    assert report["reset"] == {"settle_s": 0.0, "read_back_mhz": 1980}
    assert nvml.calls[-5][0] == "nvmlDeviceResetGpuLockedClocks"
    assert nvml.devices[0].sm_clock_mhz == 1980


def test_validation_without_permission_reports_it_and_still_resets() -> None:
    nvml = FakeNvml([FakeDevice(GPU)])
    nvml.failures["nvmlDeviceSetGpuLockedClocks"] = pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
    report = _run(nvml)
    assert str(report["error"]).startswith("permission")
    assert any(name == "nvmlDeviceResetGpuLockedClocks" for name, _ in nvml.calls)


def test_clock_picks_span_the_range_from_the_top() -> None:
    assert pick_clocks((345, 990, 1005, 1965, 1980), 3) == [1980, 1005, 345]
    assert pick_clocks((345, 1980), 1) == [1980]
