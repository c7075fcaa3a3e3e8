# ruff: noqa: N802 - the stand-in keeps NVML's own function names
"""The GPU sampler of the benchmark, against a stand-in for NVML: what it reports per GPU, and
that it never fails the benchmark."""

from __future__ import annotations

import time
from types import ModuleType, SimpleNamespace
from typing import Any

from stream.bench_gpus import GpuSampler, GpuSamples, reason_names


class FakeNvml(ModuleType):
    """Two GPUs: the first busy at 90% and held down by its power cap, the second idle."""

    NVML_CLOCK_SM = 1

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.shut_down = False

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=90 if handle == 0 else 0)

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
        return 1500 if handle == 0 else 345

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: int) -> int:
        return 0x4 if handle == 0 else 0x1  # sw power cap; idle


def test_each_gpu_is_described_by_its_samples() -> None:
    nvml = FakeNvml()
    sampler = GpuSampler(nvml)
    sampler.start()
    time.sleep(0.35)
    lines = sampler.stop()
    assert lines == (
        "GPU 0: 90% busy, SM 1500-1500 MHz, clocks held down by: sw_power_cap",
        "GPU 1: 0% busy, SM 345-345 MHz, clocks held down by: none",  # idle is not held down
    )
    assert nvml.shut_down


def test_without_nvml_nothing_is_sampled_and_nothing_fails() -> None:
    class Broken(FakeNvml):
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    sampler = GpuSampler(Broken())
    sampler.start()
    assert sampler.stop() == ()


def test_reasons_and_an_empty_gpu() -> None:
    assert reason_names(0x4 | 0x40 | 0x1) == {"sw_power_cap", "hw_thermal_slowdown"}
    assert GpuSamples().describe(3) == "GPU 3: no samples"
