"""GPU backends behind one interface: NVML on real nodes, a simulated GPU everywhere else."""

from joulescale_agent.gpu.backend import GpuBackend, GpuInfo, ThrottleReason

__all__ = ["GpuBackend", "GpuInfo", "ThrottleReason"]
