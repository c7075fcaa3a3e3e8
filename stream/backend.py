"""The CPU/GPU switch.

Nothing in knnstream imports cuDF, cuML or CuPy at module top level: code asks this module
for the package of its backend, so the CPU install needs no RAPIDS package at all.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any, Literal

import numpy as np

from stream.errors import BackendUnavailableError

Backend = Literal["cpu", "gpu"]

_GPU_PACKAGES = ("cudf", "cuml", "cupy", "dask_cudf", "dask_cuda")


def gpu_available() -> bool:
    """True when RAPIDS is importable and at least one CUDA device is visible."""
    if any(importlib.util.find_spec(name) is None for name in _GPU_PACKAGES):
        return False
    try:
        import pynvml

        pynvml.nvmlInit()
        return bool(pynvml.nvmlDeviceGetCount() > 0)
    except Exception:  # noqa: BLE001 - any failure to reach a driver means "no GPU"
        return False


def resolve_backend(requested: str) -> Backend:
    """Turn ``auto|cpu|gpu`` into the backend that will actually run."""
    if requested == "cpu":
        return "cpu"
    if requested == "gpu":
        if not gpu_available():
            raise BackendUnavailableError(
                "backend 'gpu' needs a CUDA device and RAPIDS (cudf, cuml, dask-cudf, dask-cuda);"
                " install knnstream[gpu] on a GPU host or use --backend cpu"
            )
        return "gpu"
    if requested == "auto":
        return "gpu" if gpu_available() else "cpu"
    raise BackendUnavailableError(f"unknown backend {requested!r}: use auto, cpu or gpu")


def get_df_pkg(backend: Backend) -> ModuleType:
    """``cudf`` on the GPU backend, ``pandas`` on the CPU backend."""
    return importlib.import_module("cudf" if backend == "gpu" else "pandas")


def get_dd_pkg(backend: Backend) -> ModuleType:
    """``dask_cudf`` on the GPU backend, ``dask.dataframe`` on the CPU backend."""
    return importlib.import_module("dask_cudf" if backend == "gpu" else "dask.dataframe")


def get_array_pkg(backend: Backend) -> ModuleType:
    """``cupy`` on the GPU backend, ``numpy`` on the CPU backend."""
    return importlib.import_module("cupy" if backend == "gpu" else "numpy")


def backend_of_frame(frame: object) -> Backend:
    """The backend a dataframe or array belongs to, judged by its module."""
    module = type(frame).__module__.split(".")[0]
    return "gpu" if module in {"cudf", "cupy", "dask_cudf"} else "cpu"


def to_host_numpy(array: Any) -> np.ndarray:
    """A NumPy view or copy of a NumPy or CuPy array (CuPy arrays come back from the device)."""
    getter = getattr(array, "get", None)
    return np.asarray(getter() if callable(getter) else array)
