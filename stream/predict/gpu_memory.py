"""GPU memory in use on each Dask worker, sampled with ``client.run`` from a daemon thread.

Each worker reports the device it runs on: the first entry of its ``CUDA_VISIBLE_DEVICES``
(dask-cuda gives every worker its own GPU first), read through NVML (``pynvml``) or, where
NVML is missing, through CuPy. The numbers are the device's, as ``nvidia-smi`` shows them.
GPU libraries are imported inside the functions, so this module loads on CPU-only hosts,
where every worker answers ``None`` and nothing is exported.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 15.0


@dataclass(frozen=True)
class GpuMemorySample:
    worker: str
    device: str
    used_bytes: int
    total_bytes: int


def worker_gpu_memory(dask_worker: Any = None) -> GpuMemorySample | None:
    """``client.run`` target: the memory of this worker's GPU, or None on a host without one."""
    reading = read_device_memory()
    if reading is None:
        return None
    device, used, total = reading
    name = str(dask_worker.name) if dask_worker is not None else "local"
    return GpuMemorySample(name, device, used, total)


def read_device_memory() -> tuple[str, int, int] | None:
    """(device index, bytes used, bytes in all) of this process's first visible GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    return _read_with_nvml(visible) or _read_with_cupy(visible)


def _read_with_nvml(visible: str) -> tuple[str, int, int] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        if visible.isdigit():
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible))
        else:
            handle = pynvml.nvmlDeviceGetHandleByUUID(visible)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return str(pynvml.nvmlDeviceGetIndex(handle)), int(info.used), int(info.total)
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def _read_with_cupy(visible: str) -> tuple[str, int, int] | None:
    try:
        import cupy
    except ImportError:
        return None
    try:
        free, total = cupy.cuda.runtime.memGetInfo()
    except cupy.cuda.runtime.CUDARuntimeError:
        return None
    return visible, int(total - free), int(total)


Reader = Callable[..., GpuMemorySample | None]


def sample_workers(client: Any, read: Reader = worker_gpu_memory) -> list[GpuMemorySample]:
    """One sample from every Dask worker with a GPU; workers that fail to answer are left out."""
    answers = client.run(read, on_error="return")
    return [answer for answer in answers.values() if isinstance(answer, GpuMemorySample)]


class GpuMemoryMonitor:
    """Samples the workers' GPU memory every ``interval_s`` and hands the samples to ``observe``."""

    def __init__(
        self,
        client: Any,
        observe: Callable[[Sequence[GpuMemorySample]], None],
        interval_s: float = DEFAULT_INTERVAL_S,
        read: Reader = worker_gpu_memory,
    ) -> None:
        self._client = client
        self._observe = observe
        self._interval_s = interval_s
        self._read = read
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-memory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def sample_once(self) -> list[GpuMemorySample]:
        samples = sample_workers(self._client, self._read)
        self._observe(samples)
        return samples

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.sample_once()
            except Exception as exc:  # noqa: BLE001 - a failed sample must never stop the worker
                log.warning("cannot read the GPU memory of the Dask workers: %s", exc)
            self._stopped.wait(self._interval_s)
