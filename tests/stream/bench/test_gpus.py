# ruff: noqa: N802 - the stand-in keeps NVML's own function names
"""The GPU sampler of the benchmark, against a stand-in for NVML: what it reports per GPU, and
that it never fails the benchmark."""

from __future__ import annotations

import threading
import time
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from stream.bench import gpus as bench_gpus
from stream.bench.gpus import GpuSampler, GpuSamples, reason_names


class FakeNvml(ModuleType):
    """Two GPUs. The first alternates between working at 1,500 and 1,700 MHz, held down by its
    power cap every other sample, and idle at 345 MHz; the second stays idle. Only the older name
    of the reasons' call answers, as on a driver before 535."""

    NVML_CLOCK_SM = 1

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__("pynvml")
        self.initialised = 0
        self.calls = 0
        self.fail_after = fail_after

    def nvmlInit(self) -> None:
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:
        return f"GPU-{handle}".encode()

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("GPU is lost")
        working = handle == 0 and self.calls % 3 != 0
        return SimpleNamespace(gpu=90 if working else 0)

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
        if handle == 1 or self.calls % 3 == 0:
            return 345
        return 1500 if self.calls % 3 == 1 else 1700

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        raise RuntimeError("NVMLError_FunctionNotFound")  # a driver older than the library

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: int) -> int:
        return 0x4 if handle == 0 and self.calls % 2 else 0x1  # sw power cap, or idle


def _sample(sampler: GpuSampler, nvml: FakeNvml, calls: int) -> tuple[str, ...]:
    sampler.start()
    deadline = time.monotonic() + 10
    while nvml.calls < calls and time.monotonic() < deadline:
        time.sleep(0.02)
    return sampler.stop()


def test_each_gpu_is_described_by_its_samples() -> None:
    nvml = FakeNvml()
    lines = _sample(GpuSampler(nvml), nvml, calls=12)
    first, second = lines
    assert first.startswith("GPU-0: ") and "% utilised, SM 1" in first and "MHz median" in first
    assert "345" not in first  # the idle samples' clock is not a working clock
    assert "sw_power_cap" in first and "of " in first
    assert second.startswith("GPU-1: 0% utilised, never working; clocks held down: none")
    assert nvml.initialised == 0  # shut down


def test_the_summary_is_over_every_sample() -> None:
    samples = GpuSamples("GPU-x", [90.0, 0.0, 60.0, 90.0], [1500.0, 345.0, 1700.0, 1600.0])
    samples.reasons.update(["sw_power_cap"])
    assert samples.describe() == (
        "GPU-x: 60% utilised, SM 1600 MHz median, 1500 lowest while working;"
        " clocks held down: sw_power_cap 25% of 4 samples"
    )
    assert GpuSamples("GPU-y").describe() == "GPU-y: no samples"


def test_a_gpu_lost_mid_run_ends_the_sampling_not_the_run(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml(fail_after=3)
    lines = _sample(GpuSampler(nvml), nvml, calls=4)
    assert len(lines) == 2 and nvml.initialised == 0
    assert "GPU sampling stopped: RuntimeError: GPU is lost" in caplog.text


def test_a_sampler_hung_in_an_nvml_call_reports_nothing_and_lets_the_run_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()

    class Hanging(FakeNvml):
        def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
            release.wait(30)  # a GPU that stopped answering, halfway through a sample
            return 345

    monkeypatch.setattr(bench_gpus, "JOIN_TIMEOUT_S", 0.05)
    nvml = Hanging()
    try:
        assert _sample(GpuSampler(nvml), nvml, calls=1) == ()
    finally:
        release.set()


def test_without_nvml_nothing_is_sampled_and_nothing_fails() -> None:
    class Broken(FakeNvml):
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    class NoDevices(FakeNvml):
        def nvmlDeviceGetCount(self) -> int:
            raise RuntimeError("Driver Not Loaded")

    assert _sample(GpuSampler(Broken()), FakeNvml(), calls=0) == ()
    no_devices = NoDevices()
    assert _sample(GpuSampler(no_devices), no_devices, calls=0) == ()
    assert no_devices.initialised == 0  # started, then shut down


def test_the_reasons_named_leave_idle_out() -> None:
    assert reason_names(0x4 | 0x40 | 0x1) == {"sw_power_cap", "hw_thermal_slowdown"}
