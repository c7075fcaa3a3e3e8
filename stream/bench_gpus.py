"""What the GPUs did during the benchmark's backlog: each one's utilisation and SM clock, and
why its clocks were held down, sampled through NVML (``pynvml``, part of the ``gpu`` extra).

A GPU busy less than the workers' rate would need, or one whose clocks a power or thermal limit
held down, says where a backlog's time went when the drivers' and Dask workers' CPU do not.
Sampling never fails the benchmark: without NVML it reports nothing.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)
SAMPLE_EVERY_S = 0.1
# NVML's clock event (throttle) reasons, by bit; the idle one is left out (an idle GPU is not held down).
CLOCK_REASONS = {
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}


@dataclass
class GpuSamples:
    """One GPU's samples: utilisation (%), SM clock (MHz), and the reasons its clocks were held down."""

    utilization: list[float] = field(default_factory=list)
    sm_clock_mhz: list[float] = field(default_factory=list)
    reasons: set[str] = field(default_factory=set)

    def describe(self, index: int) -> str:
        if not self.utilization:
            return f"GPU {index}: no samples"
        mean = sum(self.utilization) / len(self.utilization)
        held = ", ".join(sorted(self.reasons)) or "none"
        low, high = min(self.sm_clock_mhz), max(self.sm_clock_mhz)
        return f"GPU {index}: {mean:.0f}% busy, SM {low:.0f}-{high:.0f} MHz, clocks held down by: {held}"


def reason_names(mask: int) -> set[str]:
    return {name for bit, name in CLOCK_REASONS.items() if mask & bit}


class GpuSampler:
    """Samples every GPU of the host in a thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self._nvml = nvml  # pynvml, imported at start when not given
        self._handles: list[Any] = []
        self._samples: list[GpuSamples] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            nvml = self._nvml or importlib.import_module("pynvml")
            nvml.nvmlInit()
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception as exc:  # noqa: BLE001 - no NVML (a CPU host, a missing library): nothing to sample
            log.warning("GPUs not sampled during the backlog: %s: %s", type(exc).__name__, exc)
            return
        self._nvml = nvml
        self._samples = [GpuSamples() for _ in self._handles]
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[str, ...]:
        """Stop sampling; a line per GPU (none when nothing was sampled)."""
        if self._thread is None:
            return ()
        self._stopping.set()
        self._thread.join()
        self._thread = None
        return tuple(samples.describe(index) for index, samples in enumerate(self._samples))

    def _run(self) -> None:
        nvml = self._nvml
        assert nvml is not None
        reasons = (
            getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        try:
            while not self._stopping.wait(SAMPLE_EVERY_S):
                for handle, samples in zip(self._handles, self._samples, strict=True):
                    samples.utilization.append(float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
                    samples.sm_clock_mhz.append(float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)))
                    samples.reasons |= reason_names(int(reasons(handle)))
        except Exception as exc:  # noqa: BLE001 - a failed sample ends the sampling, never the benchmark
            log.warning("GPU sampling stopped: %s: %s", type(exc).__name__, exc)
        finally:
            nvml.nvmlShutdown()
