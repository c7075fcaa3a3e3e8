"""What the GPUs did during the benchmark's backlog, sampled through NVML (``pynvml``, part of
the ``gpu`` extra) every 100 ms: each GPU's utilisation, its SM clock while it worked, and how
often something held its clocks down.

A GPU busy less than the workers' rate would need, or one whose clocks a power or thermal limit
held down, says where a backlog's time went when the drivers' and Dask workers' CPU do not.
NVML's utilisation is the share of its own sampling window in which any kernel ran, not how full
the GPU was. Sampling never fails the benchmark: without NVML it reports nothing.
"""

from __future__ import annotations

import importlib
import logging
import statistics
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from stream.bench.sampling import SamplingThread

log = logging.getLogger(__name__)
SAMPLE_EVERY_S = 0.1
JOIN_TIMEOUT_S = 2.0
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

    name: str  # NVML's UUID of the GPU (NVML numbers GPUs its own way, whatever CUDA_VISIBLE_DEVICES says)
    utilization: list[float] = field(default_factory=list)
    sm_clock_mhz: list[float] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        count = len(self.utilization)
        if not count:
            return f"{self.name}: no samples"
        busy = sum(self.utilization) / count
        working = [clock for clock, used in zip(self.sm_clock_mhz, self.utilization, strict=True) if used > 0]
        clocks = (
            f"SM {statistics.median(working):.0f} MHz median, {min(working):.0f} lowest while working"
            if working
            else "never working"
        )
        held = ", ".join(f"{name} {n / count:.0%}" for name, n in sorted(self.reasons.items())) or "none"
        return f"{self.name}: {busy:.0f}% utilised, {clocks}; clocks held down: {held} of {count} samples"


def reason_names(mask: int) -> set[str]:
    return {name for bit, name in CLOCK_REASONS.items() if mask & bit}


class GpuSampler:
    """Samples every GPU of the host in a thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self._nvml = nvml  # pynvml, imported at start when not given
        self._handles: list[Any] = []
        self._samples: list[GpuSamples] = []
        self._sampling = SamplingThread("GPU sampler", self._run, JOIN_TIMEOUT_S)

    def start(self) -> None:
        try:
            nvml = self._nvml or importlib.import_module("pynvml")
            nvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - no NVML (a CPU host, a missing library): nothing to sample
            log.warning("GPUs not sampled during the backlog: %s: %s", type(exc).__name__, exc)
            return
        try:
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
            names = [_text(nvml.nvmlDeviceGetUUID(handle)) for handle in self._handles]
        except Exception as exc:  # noqa: BLE001 - as above, once NVML is up
            log.warning("GPUs not sampled during the backlog: %s: %s", type(exc).__name__, exc)
            _shut_down(nvml)
            return
        self._nvml = nvml
        self._samples = [GpuSamples(name) for name in names]
        self._sampling.start()

    def stop(self) -> tuple[str, ...]:
        """Stop sampling; a line per GPU (none when nothing was sampled)."""
        if not self._sampling.stop():  # never started, or hung in an NVML call halfway through a sample
            return ()
        return tuple(samples.describe() for samples in self._samples)

    def _run(self, stopping: threading.Event) -> None:
        nvml = self._nvml
        assert nvml is not None
        try:
            reasons = _reasons_reader(nvml, self._handles[0]) if self._handles else None
            while not stopping.wait(SAMPLE_EVERY_S):
                for handle, samples in zip(self._handles, self._samples, strict=True):
                    samples.utilization.append(float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
                    samples.sm_clock_mhz.append(float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)))
                    if reasons is not None:
                        samples.reasons.update(reason_names(int(reasons(handle))))
        except Exception as exc:  # noqa: BLE001 - a failed sample ends the sampling, never the benchmark
            log.warning("GPU sampling stopped: %s: %s", type(exc).__name__, exc)
        finally:
            _shut_down(nvml)


def _reasons_reader(nvml: ModuleType, handle: Any) -> Callable[[Any], int] | None:
    """NVML's call for the clocks' reasons that this driver answers: the newer name (drivers from
    535 on), else the older one; ``None`` when neither answers (the reasons are then not sampled)."""
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        call = getattr(nvml, name, None)
        if call is None:
            continue
        try:
            call(handle)
        except Exception:  # noqa: BLE001 - not in this driver: try the other name
            continue
        return call
    log.warning("the GPUs' clock reasons are not sampled: NVML answers neither call")
    return None


def _shut_down(nvml: ModuleType) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001 - nothing more to sample either way
        log.warning("NVML did not shut down: %s: %s", type(exc).__name__, exc)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
